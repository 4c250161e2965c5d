Feature: Association validation
  As a PACS administrator
  I want every association request checked against the DICOM upper layer rules before anything else
  So that a modality that misaddresses the server or does not speak DICOM is refused with a reason its log can show

  Before any policy of this server applies, an A-ASSOCIATE-RQ must be one the server can answer
  at all (PS3.8 9.3.2): addressed to this server's AE title (unless the server is told to answer
  any), in a protocol version the server speaks (bit 0 of the version field, version 1, must be
  set; other bits may be set too), and for the DICOM application context
  (1.2.840.10008.3.1.1.1). Each refusal is an A-ASSOCIATE-RJ whose result, source and reason are
  those of PS3.8 Table 9-21, so the modality can tell a misconfiguration (permanent) from a busy
  server (transient). The requests are built byte by byte by a raw peer, because no well-behaved
  DICOM toolkit will send them; each table row is one request to the same server.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario Outline: Each request gets the answer PS3.8 prescribes (check called AE title: <check>)
    Given the server setting "check_called_ae_title" is "<check>"
    When the modality "CT_ROOM_1" sends these association requests
      | case                               | called  | version | context               | answer                                           |
      | well formed                        | PACSREF | 1       | 1.2.840.10008.3.1.1.1 | accepted                                         |
      | version bits 0 and 1 (future peer) | PACSREF | 3       | 1.2.840.10008.3.1.1.1 | accepted                                         |
      | another called AE title            | ARCHIVE | 1       | 1.2.840.10008.3.1.1.1 | <other called AE>                                |
      | the called AE title in lower case  | pacsref | 1       | 1.2.840.10008.3.1.1.1 | <other called AE>                                |
      | protocol version 0                 | PACSREF | 0       | 1.2.840.10008.3.1.1.1 | protocol version not supported (1, 2, 2)         |
      | protocol version 2 only            | PACSREF | 2       | 1.2.840.10008.3.1.1.1 | protocol version not supported (1, 2, 2)         |
      | a foreign application context      | PACSREF | 1       | 1.2.3.4.5.6.7.8.9     | application context name not supported (1, 1, 2) |
    Then each is answered as the table says, within 1 second
    When the modality "CT_ROOM_1" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds

    Examples:
      | check | other called AE                          |
      | true  | called AE title not recognized (1, 1, 7) |
      | false | accepted                                 |
