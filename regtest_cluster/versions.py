"""Every pinned version and build setting, in one place."""

LND_VERSION = "v0.21.2-beta"
# invoicesrpc gives hold invoices; routerrpc is always built in. lowscrypt
# lowers only the wallet-encryption scrypt cost (lnd's own unit tests use it):
# wallet creation drops from ~10 s to well under 1 s per node on two cores, and
# regtest wallets guard no real funds. Unlike `integration`, it changes no
# protocol behaviour.
LND_BUILD_TAGS = ("signrpc", "walletrpc", "chainrpc", "invoicesrpc", "peersrpc", "lowscrypt")

# Bitcoin Knots from Debian's unstable suite: a Bitcoin Core derivative with the
# same RPC and regtest. Its libc is newer than the host's, so it runs through
# its own extracted loader together with these libraries.
BITCOIN_DEBIAN_SUITE = "sid"
BITCOIN_DEBIAN_PACKAGES = (
    "bitcoin-knots", "libc6", "libstdc++6", "libgcc-s1",
    "libevent-core-2.1-7t64", "libevent-extra-2.1-7t64", "libevent-pthreads-2.1-7t64",
    "libzmq5", "libsodium26", "libnorm1t64", "libpgm-5.3-0t64", "libbsd0", "libmd0",
    "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libcom-err2", "libkrb5support0",
    "libkeyutils1", "libsqlite3-0",
)
# Oldest bitcoind we accept from users who bring their own binaries.
BITCOIND_MIN_MAJOR = 25

# The docker backend's `--images public`: official images, where a registry is
# reachable. (By default images are built locally FROM scratch from the
# provisioned binaries above and tagged with their versions.)
PUBLIC_BITCOIND_IMAGE = "bitcoin/bitcoin:29"
PUBLIC_LND_IMAGE = f"lightninglabs/lnd:{LND_VERSION}"
