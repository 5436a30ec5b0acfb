from .bitcoind import BitcoinD, BitcoinRpc, RpcError
from .lnd import LndNode, LndRest, LndError

__all__ = ["BitcoinD", "BitcoinRpc", "RpcError", "LndNode", "LndRest", "LndError"]
