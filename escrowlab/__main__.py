from escrowlab.cli import main

main()
