"""Linux interception (``enforcer shim --intercept``): every process's DNS and web traffic
diverted to the shim by an nftables table (`nft`), the transparent listener that takes the
diverted TCP connections (`transparent`, `origdst`), and the socket mark that exempts the shim's
own sockets (`mark`), started and stopped together with the shim (`service`)."""
