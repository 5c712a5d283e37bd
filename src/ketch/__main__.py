from ketch.cli.main import run

run()
