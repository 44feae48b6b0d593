from nowait.cli import main

main()
