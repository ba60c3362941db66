"""The dependencies of distro-registry; everything else is in pyproject.toml.

They are computed here because one of them is the SDK in ./client, a distribution of its own
(distroreg-client) that is not on any package index: a dependency on a local folder must be an absolute
``file://`` URL (PEP 508), known only when the build runs. So:

* built from a checkout (``pip install .``, ``pip install -e .``, ``pip wheel .``, pipx), where ./client is
  beside this file: ``distroreg-client @ file:///<checkout>/client``, which pip builds and installs too;
* built from sources without ./client (scripts/build-image does this for the image, with the SDK's own wheel
  beside the project's): a plain ``distroreg-client`` requirement, found by ``--find-links``.
"""

from pathlib import Path

from setuptools import setup

SDK = "distroreg-client"
SDK_VERSION = "0.1.0"
sdk_dir = Path(__file__).resolve().parent / "client"
if (sdk_dir / "pyproject.toml").is_file():
    sdk = f"{SDK} @ {sdk_dir.as_uri()}"
else:
    sdk = f"{SDK}=={SDK_VERSION}"

setup(install_requires=["trio>=0.25", "httpx>=0.27", "msgpack>=1.0", "h2>=4.1", "hpack>=4.0", sdk])
