from sensorpipe.cli import main

main()
