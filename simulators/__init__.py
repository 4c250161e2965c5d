"""DICOM network simulators: independent peers that judge a DICOM server from the outside.

- :mod:`simulators.echo`: a well-behaved Verification SCU on pynetdicom's AE.
- :mod:`simulators.misbehaving`: a raw-socket peer (``RawPeer``) with hand-built PDUs
  (:mod:`simulators.pdus`) and a hand-built C-ECHO command set (:mod:`simulators.commands`).
- :mod:`simulators.scenarios`: named misbehaviours for ``python -m simulators raw``.
- :mod:`simulators.netutil`: free loopback ports and bounded waits for a listener.
- :mod:`simulators.testservers`: pynetdicom and DCMTK reference SCPs for tests and recordings.

Nothing here imports pacsref: a server judged only by its own code proves little.
"""
