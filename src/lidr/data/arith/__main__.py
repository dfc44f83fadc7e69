"""`python -m lidr.data.arith [--out DIR] [--seed N] [--languages en,es] [--templates DIR]`: (re)write
the splits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lidr.data.arith.generate import DEFAULT_SEED, generate
from lidr.data.arith.spec import ARITH_DIR, TEMPLATES_DIR, ArithError


def main(
    out: Path = typer.Option(ARITH_DIR, "--out", help="folder for <split>/<lang>.jsonl (default: the bundled copy)"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="the bundled splits use the default"),
    languages: Optional[str] = typer.Option(None, "--languages",
                                            help="comma-separated codes (default: every templates/*.yaml)"),
    templates: Path = typer.Option(TEMPLATES_DIR, "--templates", help="folder of <lang>.yaml wordings"),
) -> None:
    codes = [c.strip() for c in languages.split(",") if c.strip()] if languages else None
    try:
        sizes = generate(out, seed, codes, templates)
    except ArithError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(", ".join(f"{split}: {n}" for split, n in sizes.items()) + f" problems per language in {out}")


if __name__ == "__main__":
    typer.run(main)
