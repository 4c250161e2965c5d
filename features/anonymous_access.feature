Feature: Anonymous access
  As a PACS administrator
  I want to choose whether modalities I have not registered may associate, and to bind each registered AE title to its host
  So that only known devices, from their known addresses, reach a server that holds patient data

  The AE title table (aetitles.toml in the server directory) lists the peers the server knows:
  AE title, host (an IP address or a host name, standing for its addresses) and port. With Allow
  Anonymous off, a calling AE title that is not in the table is refused. Whatever Allow
  Anonymous says, a title that *is* in the table but arrives from another address than its
  host's is refused too: the AE title alone proves nothing, any device can send any title. Both
  refusals are A-ASSOCIATE-RJ (1, 1, 3), calling AE title not recognized (PS3.8 Table 9-21):
  permanent, because retrying will not help until an administrator changes the table. On
  loopback, a client bound to 127.0.0.2 plays the other host.

  Background:
    Given a pacsref server with AE title "PACSREF"
    And the AE title table lists "CT_ROOM_1" at 127.0.0.1 port 104
    And the AE title table lists "US_ROOM_3" at localhost port 104

  @fixture.pacsref.server
  Scenario Outline: Allow Anonymous <allow>: who may associate, from where
    Given the server setting "allow_anonymous" is "<allow>"
    When these modalities each send a C-ECHO to "PACSREF" with pynetdicom
      | modality  | from      | outcome                                   |
      | CT_ROOM_1 | 127.0.0.1 | success                                   |
      | CT_ROOM_1 | 127.0.0.2 | calling AE title not recognized (1, 1, 3) |
      | US_ROOM_3 | 127.0.0.1 | success                                   |
      | US_ROOM_3 | 127.0.0.2 | calling AE title not recognized (1, 1, 3) |
      | MR_ROOM_2 | 127.0.0.1 | <stranger>                                |
      | MR_ROOM_2 | 127.0.0.2 | <stranger>                                |
    Then each is answered as the table says, within 1 second

    Examples:
      | allow | stranger                                  |
      | false | calling AE title not recognized (1, 1, 3) |
      | true  | success                                   |

  @fixture.pacsref.server @dcmtk
  Scenario: DCMTK's echoscu is told its AE title is not recognized
    Given the server setting "allow_anonymous" is "false"
    When the modality "ECHOSCU" sends a C-ECHO to "PACSREF" with DCMTK echoscu
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
