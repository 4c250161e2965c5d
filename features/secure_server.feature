Feature: Secure server
  As a PACS administrator
  I want the server to speak DICOM only over TLS, and only with devices holding our site's certificates
  So that images cross the network encrypted, and no device can pass itself off as another

  A secure server (the "server_secure" setting) listens with TLS 1.2 or 1.3 and the BCP 195
  cipher suites only, and requires each modality to present a certificate signed by the site
  CA. Its security add-in may also bind a certificate to the calling AE titles it may use:
  a device calling under another device's AE title is rejected as PS3.8 says for an unknown
  calling AE title. Refusals happen in the TLS handshake (no association at all) or with an
  A-ASSOCIATE-RJ, and the server log names the reason. DCMTK's echoscu plays the modality,
  with certificates made for each scenario. Every scenario gets a new server.

  Background:
    Given a pacsref server with AE title "SECURE"

  @fixture.pacsref.server @dcmtk
  Scenario Outline: A modality with a site certificate verifies connectivity over TLS (<profile>)
    Given the server is secure, with a certificate from the site CA
    And the modality "CT_ROOM_1" has a certificate from the site CA
    When the modality "CT_ROOM_1" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu using the <profile> profile
    Then the echo succeeds
    And the server log says "TLS established (<version>"

    Examples:
      | profile                 | version |
      | Non-downgrading BCP 195 | TLSv1.3 |
      | Extended BCP 195        | TLSv1.2 |

  @fixture.pacsref.server @dcmtk
  Scenario: A modality that does not speak TLS is refused
    Given the server is secure, with a certificate from the site CA
    When the modality "CT_ROOM_1" sends a C-ECHO to "SECURE" with DCMTK echoscu
    Then the connection is refused during the TLS handshake
    And the server log says "TLS handshake failed: wrong version number"

  @fixture.pacsref.server @dcmtk
  Scenario Outline: A modality with an unacceptable certificate is refused (<certificate>)
    Given the server is secure, with a certificate from the site CA
    And the modality "CT_ROOM_1" has <certificate>
    When the modality "CT_ROOM_1" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu
    Then the connection is refused during the TLS handshake
    And the server log says "<reason>"

    Examples:
      | certificate                      | reason                                                              |
      | an expired certificate           | certificate has expired                                             |
      | a certificate from an unknown CA | unable to get local issuer certificate (not signed by a trusted CA) |
      | a certificate for servers only   | certificate purpose (no clientAuth/serverAuth Extended Key Usage)   |
      | no certificate                   | peer did not return a certificate                                   |

  @fixture.pacsref.server @dcmtk
  Scenario: A cipher suite outside BCP 195 is refused
    DCMTK's retired AES profile offers only TLS_RSA_WITH_AES_128_CBC_SHA over TLS 1.2: no forward
    secrecy, no AEAD.

    Given the server is secure, with a certificate from the site CA
    And the modality "CT_ROOM_1" has a certificate from the site CA
    When the modality "CT_ROOM_1" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu using the retired AES profile
    Then the connection is refused during the TLS handshake
    And the server log says "TLS handshake failed: no shared cipher"

  @fixture.pacsref.server @dcmtk
  Scenario: A certificate bound to an AE title cannot call under another
    Given the server is secure, with a certificate from the site CA
    And the certificate "CT_ROOM_1" is bound to the calling AE title "CT_ROOM_1"
    And the modality "CT_ROOM_1" has a certificate from the site CA
    When the modality "MR_1" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu presenting the certificate of "CT_ROOM_1"
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
    And the server log says "is bound to calling AE title(s) CT_ROOM_1, not 'MR_1'"

  @fixture.pacsref.server @dcmtk
  Scenario: Another device's certificate cannot use a bound AE title
    Given the server is secure, with a certificate from the site CA
    And the certificate "CT_ROOM_1" is bound to the calling AE title "CT_ROOM_1"
    And the modality "WORKSTATION" has a certificate from the site CA
    When the modality "CT_ROOM_1" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu presenting the certificate of "WORKSTATION"
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)

  @fixture.pacsref.server @dcmtk
  Scenario: The server keeps serving after refusing a peer
    Given the server is secure, with a certificate from the site CA
    And the modality "OLD_CT" has an expired certificate
    And the modality "CT_ROOM_1" has a certificate from the site CA
    When the modality "OLD_CT" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu
    Then the connection is refused during the TLS handshake
    When the modality "CT_ROOM_1" sends a C-ECHO to "SECURE" over TLS with DCMTK echoscu
    Then the echo succeeds

  @fixture.pacsref.server
  Scenario: A secure server without its security options refuses to start
    Given the server setting "server_secure" is "true"
    When the server is started
    Then it refuses to start, saying "Server Secure is on but no add-in provides ISecurity" in one line
