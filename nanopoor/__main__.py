from nanopoor.cli import main

main()
