from theorylab.cli import main

main()
