"""List the remote assets of a built HTML site: what a page would fetch
from the network to display (scripts, style sheets, fonts, images, frames).

Usage: ``python docs/check_offline.py docs/_build/html``; exits with status 1
and one line per reference (file and URL) if there is any. Links a reader
may follow (``<a href>``) are not assets and are allowed.
"""
import pathlib
import re
import sys
from html.parser import HTMLParser

#: (tag, attribute) pairs whose URL the browser fetches to show the page.
_FETCHED = {("script", "src"), ("img", "src"), ("img", "srcset"), ("iframe", "src"),
            ("source", "src"), ("source", "srcset"), ("video", "src"), ("video", "poster"),
            ("audio", "src"), ("embed", "src"), ("object", "data"), ("input", "src"),
            ("track", "src")}
#: ``<link rel=...>`` kinds that load something (a plain hyperlink rel does not).
_LOADING_RELS = {"stylesheet", "preload", "prefetch", "icon", "shortcut", "modulepreload",
                 "manifest", "apple-touch-icon", "mask-icon"}
_REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""",
                      re.IGNORECASE)


class _AssetFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.remote = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        for name, value in attrs.items():
            urls = [u.split()[0] for u in value.split(",") if u.strip()] \
                if name == "srcset" else [value]
            if (tag, name) in _FETCHED and any(_REMOTE.match(u) for u in urls):
                self.remote.append(value)
        rels = set(attrs.get("rel", "").lower().split())
        if tag == "link" and rels & _LOADING_RELS and _REMOTE.match(attrs.get("href", "")):
            self.remote.append(attrs["href"])
        if "style" in attrs:
            self.remote += _CSS_URL.findall(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.remote += _CSS_URL.findall(data)


def remote_assets(site):
    """``[(path relative to site, url)]`` of every remote asset the built
    site's HTML and CSS files reference."""
    site = pathlib.Path(site)
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            finder = _AssetFinder()
            finder.feed(path.read_text(encoding="utf-8", errors="replace"))
            urls = finder.remote
        elif path.suffix == ".css":
            urls = _CSS_URL.findall(path.read_text(encoding="utf-8", errors="replace"))
        else:
            continue
        found += [(str(path.relative_to(site)), url) for url in urls]
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not pathlib.Path(argv[0]).is_dir():
        print("usage: python docs/check_offline.py <built html directory>", file=sys.stderr)
        return 2
    found = remote_assets(argv[0])
    for path, url in found:
        print(f"{path}: {url}")
    if found:
        print(f"{len(found)} remote asset reference(s): the site needs a network to display",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
