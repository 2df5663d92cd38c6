"""Check a built book renders its maths offline: every page that holds maths loads MathJax from the site
itself (``_static/mathjax``, bundled by sphinx-mathjax-offline), never from a CDN, and that file exists.

    python book/check_offline.py build/book      # run by `make book`

(The widget pages still name the Jupyter widgets' CDN for their interactive state; their static outputs and
all formulas show without a network.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SCRIPT = re.compile(r'<script[^>]*\bsrc="([^"]+)"', re.I)


def check(site: Path) -> list[str]:
    problems, with_maths = [], 0
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        sources = SCRIPT.findall(html)
        mathjax = [s for s in sources if "mathjax" in s.lower()]
        if not mathjax:
            continue
        with_maths += 1
        for src in mathjax:
            if re.match(r"(https?:)?//", src):
                problems.append(f"{page.relative_to(site)}: MathJax from the network ({src})")
            elif not (page.parent / src.split("?")[0]).is_file():
                problems.append(f"{page.relative_to(site)}: {src} is not in the site")
    if with_maths == 0:
        problems.append(f"no page under {site} loads MathJax: the check found nothing to check")
    return problems


if __name__ == "__main__":
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "build/book")
    found = check(site)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"book: maths renders offline ({site})")
