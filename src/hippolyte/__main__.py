from hippolyte.cli import main

main()
