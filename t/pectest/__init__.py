"""pectest: support code for pecmilter's Python tests (standard library only).

Modules:
  env      paths handed over by ctest (source, build, PKI, shared folder)
  config   writes a pecmilter.conf for a test provider
  crash    providers killed with SIGKILL under load, and the checks of the crash tests
  daemon   starts and stops pecmilter for a test
  milter   the MTA side of the milter protocol, to drive the daemon directly
  postfix  private Postfix instances on loopback
  provider a PEC provider's Postfix, made from contrib/postfix as shipped
  pki      the generated test PKI and providers' index
"""
