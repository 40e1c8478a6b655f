"""One module per gate-device family, each a pure translator (``fangxian.edge.adapter``)."""
