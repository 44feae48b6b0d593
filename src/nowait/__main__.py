from nowait.entry import main

main()
