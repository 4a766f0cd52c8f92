"""PNG figures in Dagster metadata.

``png_markdown`` embeds the PNG as a data URI: it works with nothing else running, but the UI
draws markdown of 1,000 characters or more behind "[Show Markdown]". ``linked_png_markdown``
points at a served copy (the MLflow UI serves every logged figure): short enough for the asset
page to draw it in place, as long as that server is up.
"""

import base64
from pathlib import Path


def png_markdown(path: Path, title: str) -> str:
    """Markdown that shows the PNG at ``path`` in the Dagster UI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{title}](data:image/png;base64,{data})"


def linked_png_markdown(figures: dict[str, str], note: str = "") -> str:
    """Markdown that draws each figure (title → URL) in place, then ``note``."""
    images = " ".join(f"![{title}]({url})" for title, url in figures.items())
    return f"{images}\n\n{note}" if note else images
