"""A newcomer's first seconds: `import ume` and `ume --help` load no heavy library (names are lazy)."""

import subprocess
import sys

from typer.testing import CliRunner

HEAVY = ("torch", "transformers", "faiss", "mteb", "fastapi", "datasets", "av", "ray")


def test_import_and_help_load_no_heavy_library():
    code = (f"import sys, ume, ume.cli; heavy = [m for m in {HEAVY!r} if m in sys.modules]; assert not heavy, heavy; "
            "assert sorted(ume.__all__) == sorted(ume._EXPORTS); ume.Item; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    from ume.cli import app

    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0 and "embed" in res.output


def run_main(capsys, *args):
    import pytest

    from ume.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code, capsys.readouterr().err


def test_expected_errors_are_two_lines_and_exit_2(capsys, tmp_path, monkeypatch):
    code, err = run_main(capsys, "eval", "--model", str(tmp_path / "missing"), "--task", "NoSuchTask")
    assert code == 2 and err.splitlines()[0].startswith("error: unknown task(s) ['NoSuchTask']")
    assert len(err.strip().splitlines()) == 2 and "--debug" in err
    code, err = run_main(capsys, "eval", "--model", str(tmp_path / "missing"), "--task", "CIRR", "--qry-mode", "gen")
    assert code == 2 and err.startswith("warning: --qry-mode gen with --tgt-mode disc")  # mixed spaces: said
    code, err = run_main(capsys, "eval", "--bogus")
    assert code == 2 and "No such option: --bogus" in err
    code, err = run_main(capsys, "tiny", "build", str(tmp_path / "t"), "--family", "llama")
    assert code == 2 and "llama" in err
    monkeypatch.setenv("UME_DEBUG", "1")  # the traceback for whoever asks
    import pytest

    from ume.cli import main

    with pytest.raises(ValueError, match="unknown task"):
        main(["eval", "--model", "m", "--task", "NoSuchTask"])


def test_a_missing_model_or_device_is_named_before_any_work(capsys, tmp_path):
    from pathlib import Path

    tiny = Path(__file__).resolve().parents[1] / "examples" / "tiny-qwen2-vl"
    items = tmp_path / "items.jsonl"
    items.write_text('{"text": "a"}\n')
    code, err = run_main(capsys, "eval", "--model", str(tmp_path / "no-such-model"), "--task", "ImageNet-1K",
                         "--data-root", str(tmp_path), "--output", str(tmp_path / "out"))
    assert code == 2 and f"model '{tmp_path / 'no-such-model'}': no such directory" in err
    code, err = run_main(capsys, "eval", "--model", str(tiny), "--task", "ImageNet-1K", "--device", "cuda:7",
                         "--data-root", str(tmp_path), "--output", str(tmp_path / "out2"))
    assert code == 2 and "device 'cuda:7'" in err and len(err.strip().splitlines()) == 2
    code, err = run_main(capsys, "demo", "--models", str(tmp_path / "nowhere"), "--output", str(tmp_path / "d"))
    assert code == 2 and "shipped demo models are not at" in err and not (tmp_path / "d").exists()


def test_progress_in_a_log_file_is_plain_lines():
    import io

    from ume.progress import RunProgress

    log = io.StringIO()  # not a terminal
    p = RunProgress(3, "eval", "task", every_s=0.0, stream=log)
    p.status("K700 qry gen: 10/433 items, 1,234 tok/s")
    p.update()
    p.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no carriage returns, no escape codes
    lines = text.splitlines()
    assert lines[0].startswith("eval: 0/3 tasks (") and lines[0].endswith("K700 qry gen: 10/433 items, 1,234 tok/s")
    assert lines[1].startswith("eval: 1/3 tasks (") and "eta" in lines[1]
