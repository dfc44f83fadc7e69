"""arith: easy aligned arithmetic word problems in several languages.

One or two steps over small numbers, written natively per language from templates
(`templates/<lang>.yaml`) over a shared spec (`spec.yaml`: splits, number ranges,
answers). Splits `train_1`, `train_2` (training templates), `dev` and `test` (each its
own templates) are bundled as `bundled:arith/<split>/{lang}.jsonl`.
Regenerate with `python -m lidr.data.arith`.
"""

from lidr.data.arith.generate import DEFAULT_SEED, generate
from lidr.data.arith.spec import ArithError, available_languages, load_language, load_spec

__all__ = ["DEFAULT_SEED", "ArithError", "available_languages", "generate", "load_language", "load_spec"]
