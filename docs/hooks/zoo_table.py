"""mkdocs hook: replaces the marker <!-- zoo-table --> (and <!-- tag-table -->) with tables built from the registry.

The tables are generated at build time, so the docs can never disagree with the code.
"""
import hub3d
from hub3d.cli.zoo import tag_row


def markdown_table(rows):
    if not rows:
        return ""
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(r[h]).replace("|", "\\|") for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if "<!-- zoo-table -->" in markdown:
        rows = [hub3d.model_info(name).as_row() for name in hub3d.list_models()]
        markdown = markdown.replace("<!-- zoo-table -->", markdown_table(rows))
    if "<!-- tag-table -->" in markdown:
        rows = [tag_row(name, tag) for name in hub3d.list_models(pretrained=True) for tag in hub3d.list_tags(name)]
        markdown = markdown.replace("<!-- tag-table -->", markdown_table(rows))
    return markdown
