Feature: Multiple connections
  As a PACS administrator
  I want to decide whether one modality may hold several associations at once
  So that a modality stuck in a reconnect loop cannot take every place of the server, while devices that open parallel associations on purpose still can

  With Multiple Connections off, a calling AE title that already has an association open from
  an IP address is refused a second one from that same address. The refusal is transient,
  A-ASSOCIATE-RJ (2, 3, 2) local limit exceeded (docs/architecture.md, "Acceptance policy"):
  it is a per-peer limit on concurrent associations, as Max Clients is a server-wide one, and
  the modality may retry once its other association has ended. The same AE title from another
  address, or another AE title from the same address, is a different peer and is served.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario Outline: Multiple connections <setting>, while "CT_ROOM_1" is associated from 127.0.0.1
    Given the server setting "multiple_connections" is "<setting>"
    And the modality "CT_ROOM_1" holds an association with the server from 127.0.0.1
    When these modalities each send a C-ECHO to "PACSREF" with pynetdicom
      | modality  | from      | outcome     |
      | CT_ROOM_1 | 127.0.0.1 | <same peer> |
      | CT_ROOM_2 | 127.0.0.1 | success     |
      | CT_ROOM_1 | 127.0.0.2 | success     |
    Then each is answered as the table says, within 1 second
    And every held association still answers a C-ECHO

    Examples:
      | setting | same peer                      |
      | false   | local limit exceeded (2, 3, 2) |
      | true    | success                        |

  @fixture.pacsref.server
  Scenario: Once its association is released, the same modality may associate again
    Given the server setting "multiple_connections" is "false"
    And the modality "CT_ROOM_1" holds an association with the server
    When the modality "CT_ROOM_1" releases its association
    And the modality "CT_ROOM_1" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds

  @fixture.pacsref.server @dcmtk
  Scenario: DCMTK's echoscu is refused while its AE title is associated
    Given the server setting "multiple_connections" is "false"
    And the modality "ECHOSCU" holds an association with the server
    When the modality "ECHOSCU" sends a C-ECHO to "PACSREF" with DCMTK echoscu
    Then the association is rejected as "local limit exceeded" (2, 3, 2)
