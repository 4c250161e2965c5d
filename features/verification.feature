Feature: Verification
  As a PACS administrator
  I want every modality to check its connection to the PACS with a C-ECHO
  So that I know it reaches the server under the right AE title before it sends any images

  A C-ECHO is the DICOM "ping": the modality opens an association with the server, sends an echo
  request and gets "success" back. A modality that calls the server by a wrong AE title is
  refused before any echo, with the reason the DICOM standard prescribes (PS3.8 Table 9-21: the
  numbers are result, source and reason). Two independent DICOM implementations play the
  modality: pynetdicom and DCMTK's echoscu. Every scenario gets a new server.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario: A modality verifies connectivity with C-ECHO
    When the modality "CT_ROOM_1" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds

  @fixture.pacsref.server @dcmtk
  Scenario: A modality verifies connectivity with DCMTK echoscu
    When the modality "CT_ROOM_1" sends a C-ECHO to "PACSREF" with DCMTK echoscu
    Then the echo succeeds

  @fixture.pacsref.server
  Scenario Outline: A wrong called AE title is rejected (<client>)
    When the modality "CT_ROOM_1" sends a C-ECHO to "ARCHIVE" with <client>
    Then the association is rejected as "called AE title not recognized" (1, 1, 7)

    Examples: pynetdicom
      | client     |
      | pynetdicom |

    @dcmtk
    Examples: DCMTK
      | client        |
      | DCMTK echoscu |

  @fixture.pacsref.server
  Scenario: Any calling AE title is accepted on a fresh server
    A new server allows anonymous access: it answers modalities it has never been told about.

    When the modality "UNKNOWN_MODALITY" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds

  @fixture.pacsref.server
  Scenario: Many echoes on one association
    When the modality "CT_ROOM_1" sends 100 C-ECHOs to "PACSREF" on one association with pynetdicom
    Then all 100 echoes succeed
