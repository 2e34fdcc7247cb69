"""The fleet link: the node's tie to the control plane in Consul.

``watcher`` (read group assignments), ``reporter`` (publish node state) and ``fleet``
(``FleetLink`` and ``ConsulCatalog``, which join the two to the node).
"""
