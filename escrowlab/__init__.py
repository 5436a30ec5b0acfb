"""escrowlab: the command line that ties the cluster, app, scenarios and reports together."""

__version__ = "0.1.0"
