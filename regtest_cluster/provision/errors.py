class ProvisionError(RuntimeError):
    """Raised when node binaries cannot be provisioned; the message names the missing piece."""
