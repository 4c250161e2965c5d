"""DICOM network simulators: independent peers that judge a DICOM server from the outside.

- :mod:`simulators.echo`: a well-behaved Verification SCU on pynetdicom's AE.
- :mod:`simulators.misbehaving`: a raw-socket peer (``RawPeer``) with hand-built PDUs
  (:mod:`simulators.pdus`) and a hand-built C-ECHO command set (:mod:`simulators.commands`).
- :mod:`simulators.crowd`: many raw associations at once (Max Clients, bursts, load).
- :mod:`simulators.scenarios`: named misbehaviours for ``python -m simulators raw``.
- :mod:`simulators.options`: argument types shared by both command lines (AE titles).
- :mod:`simulators.netutil`: free loopback ports, bounded waits for a listener, and the
  kernel's view of a TCP connection (``/proc/net/tcp``).
- :mod:`simulators.testservers`: pynetdicom, DCMTK (storescp, dcmqrscp) and Orthanc reference
  SCPs for tests and recordings.

Nothing here imports pacsref: a server judged only by its own code proves little.
"""
