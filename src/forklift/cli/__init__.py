"""The command line: flags to options, progress and errors to text. One module per command group."""
