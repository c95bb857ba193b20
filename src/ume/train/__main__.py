"""`python -m ume.train sft …`: the entry torchrun launches (`torchrun --nproc_per_node 2 -m ume.train sft …`)."""

from ume.train.cli import train_app

train_app(prog_name="python -m ume.train")
