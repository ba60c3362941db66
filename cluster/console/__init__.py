"""The web console at ``/nacos/`` (issue 13).

Static files (HTML, CSS and ES modules, no build step) ship in ``static/`` inside this package; every node
serves them from memory (:mod:`cluster.console.assets`). The pages read and write through the same public
Nacos API as every client, plus a few read-only endpoints a console needs and Nacos lacks
(:mod:`cluster.console.endpoints`). ``docs/console.md`` describes the pages.
"""

from cluster.console.assets import StaticAssets
from cluster.console.endpoints import ConsoleEndpoints

__all__ = ["ConsoleEndpoints", "StaticAssets"]
