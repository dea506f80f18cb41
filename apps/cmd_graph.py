"""Show a named graph's topology: nodes top to bottom, and a Mermaid diagram to paste into Markdown.

``clockless graph list`` lists the graphs; ``clockless graph show NAME`` prints one.
"""

from __future__ import annotations

from graphs.registry import available_graphs, get_graph

EXAMPLE = "clockless graph show gesture"


def add_arguments(p) -> None:
    p.add_argument("action", choices=["show", "list"], help="show one graph, or list them")
    p.add_argument("name", nargs="?", default=None, help="graph name (see 'clockless graph list')")
    p.add_argument("--mermaid", action="store_true", help="print only the Mermaid diagram")


def run(args) -> int:
    if args.action == "list" or args.name is None:
        for name, text in available_graphs().items():
            print(f"{name:<14}{text}")
        return 0
    g = get_graph(args.name)
    if not args.mermaid:
        print(g.describe())
        print()
    print("```mermaid")
    print(g.mermaid())
    print("```")
    return 0
