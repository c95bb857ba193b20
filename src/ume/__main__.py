from ume.cli import main

main()
