from colonynode.cli.main import main

main()
