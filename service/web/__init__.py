"""The one-map page (一张图): the page, its vendored map library, basemap tiles and overlays."""
