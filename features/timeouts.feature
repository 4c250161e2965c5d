Feature: Timeouts
  As a PACS administrator
  I want the server to drop peers that hold a connection without using it, and to answer even when an add-in hangs
  So that a crashed modality, a port scanner or a stuck add-in cannot use up the server

  Four timers guard the server; each is a setting in seconds. The peers of a table act at the
  same time against one server, one thread each: timers are per connection.

  Client timeout (client_timeout): an associated peer that sends nothing for that long gets an
  A-ABORT and is disconnected, even when it does not read what the server sends it. A peer that
  keeps sending requests is never timed out.

  ARTIM (artim_timeout, PS3.8 9.1.5 and Table 9-10): a connected peer must complete its
  A-ASSOCIATE-RQ within it, counted from the connection; bytes arriving do not restart it, so a
  trickle is dropped too. After an A-ASSOCIATE-RJ, an A-RELEASE-RP or the server's A-ABORT, the
  requestor is the one to close; the server waits at most ARTIM for it (Sta13). Times are
  counted from the connection, or from that last PDU.

  Add-in timeout (addin_timeout): an add-in that takes longer gets its request answered with
  0x0110 Processing failure, and the association carries on. The slow add-in here
  (features/support/slow_echo_addin.py) serves C-ECHO on a private SOP class and takes a given
  time to answer.

  Reconnect timeout (reconnect_timeout): bounds the server's own outbound connection attempts
  (C-MOVE sub-operations, through IDicomRequest). No request the server serves today makes it
  connect out, so the setting cannot be observed from outside a running server; unit tests cover
  it with a Clock. The last scenario drives the same requestor through "pacsref echo" against a
  port that never completes a TCP handshake.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario Outline: The client timeout (<timeout> s) cuts off silent peers and spares talking ones
    Given the server setting "client_timeout" is "<timeout>"
    When these raw peers act at the same time
      | peer      | behaviour                                                      |
      | CT_ROOM_1 | associates and then sends nothing                              |
      | MR_ROOM_2 | associates and sends a C-ECHO every <pace> s for <talking> s   |
    Then the silent ones get an A-ABORT and are disconnected between <earliest> and <bound> seconds
    And the talking ones are served throughout

    Examples:
      | timeout | pace | talking | earliest | bound |
      | 1       | 0.4  | 2.5     | 0.9      | 2.5   |
      | 2       | 0.8  | 3       | 1.9      | 3.5   |

  @fixture.pacsref.server
  Scenario: A peer that never reads is disconnected too, and the others are served meanwhile
    The server stops reading a peer that does not take its answers. That peer falls silent,
    its client timeout ends it, and because its A-ABORT cannot be delivered, the connection
    is cut once ARTIM expires. The server's socket send buffer is set small, so that its
    answers back up at once: left to the kernel, the buffer grows to megabytes, and how long
    the server then answers before it stops reading depends on the machine's speed.

    Given the server setting "client_timeout" is "2"
    And the server setting "artim_timeout" is "1"
    And the server setting "send_buffer" is "16384"
    When a slow reader "SLOW_READER" floods the server with C-ECHO requests, never reading
    And the modality "CT_ROOM_1" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds
    And the server stopped reading the slow reader before its flood ended
    And the server lets go of the slow reader's connection within 4 seconds

  @fixture.pacsref.server
  Scenario Outline: ARTIM (<artim> s) cuts off every connection that holds no association
    Given the server setting "artim_timeout" is "<artim>"
    When these raw peers act at the same time
      | peer         | behaviour                                                                             |
      | SILENT       | connects and sends nothing                                                            |
      | TRICKLE      | trickles its A-ASSOCIATE-RQ one byte every 0.25 s                                     |
      | TRICKLE_BODY | sends the A-ASSOCIATE-RQ header at once, then trickles the rest one byte every 0.25 s |
      | REJECTED     | is rejected and then keeps the connection open                                        |
      | RELEASED     | releases its association and then keeps the connection open                           |
      | ABORTED      | is aborted by the server and then keeps the connection open                           |
    Then the server closes every one of them between <earliest> and <bound> seconds
    And no trickled A-ASSOCIATE-RQ was complete when it did

    Examples:
      | artim | earliest | bound |
      | 1     | 0.9      | 2.5   |
      | 2     | 1.9      | 3.5   |

  @fixture.pacsref.server
  Scenario Outline: An add-in taking <delay> s under an add-in timeout of <timeout> s answers <status>
    Given the server setting "addin_timeout" is "<timeout>"
    And the server has the slow add-in, taking <delay> s per C-ECHO
    When a raw peer "CT_ROOM_1" associates for the slow add-in's SOP class and Verification
    And it sends a C-ECHO for the slow add-in's SOP class
    Then the C-ECHO status is <status> within <bound> seconds
    And a C-ECHO for Verification on the same association succeeds

    Examples:
      | timeout | delay | status | bound |
      | 1       | 2.5   | 0x0110 | 2     |
      | 2       | 0.2   | 0x0000 | 1.5   |

  @fixture.pacsref.server
  Scenario: The outbound requestor gives up on a peer that never completes the TCP handshake
    Given a port on 127.0.0.1 that never completes a TCP handshake
    When "pacsref echo" calls it with a timeout of 1 second
    Then it gives up within 6 seconds with a failure exit status
