// Nothing: this package only names the sources build.sh fetches.
