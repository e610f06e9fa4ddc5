from recpipe.cli import main

main(prog_name="recpipe")
