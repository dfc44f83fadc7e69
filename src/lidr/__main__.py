from lidr.cli import app

app()
