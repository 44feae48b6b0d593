from nowait_entry import main

main()
