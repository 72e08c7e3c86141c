"""The `rlaif-ray` command (placeholder until the CLI lands)."""
def main(argv=None):
    raise SystemExit("not yet")
