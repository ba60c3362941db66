"""Unit and property tests of the pure core (``distro/``)."""

from hypothesis import settings

#: Property tests run a fifth of the profile's examples (the profile's count is sized for the stateful
#: simulator test): 140 under ``ci``, 3,400 under ``soak``.
PROPERTIES = settings(max_examples=max(10, settings().max_examples // 5))
