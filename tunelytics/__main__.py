from tunelytics.cli import main

main()
