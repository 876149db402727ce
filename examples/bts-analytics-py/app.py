"""The component's entry point: componentize-py exports `Analytics`."""

import sluice_guest

from bts import Bts

Analytics = sluice_guest.export(Bts)
