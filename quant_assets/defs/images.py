"""PNG figures inline in Dagster metadata (markdown with a data URI: the UI shows them as is)."""

import base64
from pathlib import Path


def png_markdown(path: Path, title: str) -> str:
    """Markdown that shows the PNG at ``path`` in the Dagster UI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{title}](data:image/png;base64,{data})"
