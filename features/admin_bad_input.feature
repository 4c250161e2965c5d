@fixture.pacsref.servers
Feature: Bad input on the administrative socket is refused with its reason, and harms nothing
  As a PACS administrator who scripts the administrative socket
  I want every mistaken line answered with what is wrong with it
  So that a broken script is easy to fix and never disturbs the server, the other
  administrators, or the modalities it serves

  A bad line gets a response with success false, no data and the reason in "error"; the response
  is named after the request whenever its name could be read (a JSON object with a string
  "message", whatever else is wrong with it), else "Error". A request whose "service" names
  another server than the socket's is refused, so a script cannot change the wrong server by
  mistake ("" or no "service" at all is fine). The admin connection
  carries on (docs/admin-protocol.md, "Errors"). The only exception is a line longer than 1 MiB,
  which cannot be framed: it is answered and that one connection is closed. The bad lines are
  written on a raw Unix socket, as a broken script would write them.

  Background:
    Given these servers run side by side in one root folder
      | server | settings |
      | PACS_A |          |

  Scenario Outline: <what> is answered with the reason, and the connection carries on
    When a raw admin connection to "PACS_A" sends: <line>
    Then the response to "<answer>" fails with error "<error>"
    When the raw admin connection to "PACS_A" sends: {"message": "GetStatus", "data": []}
    Then the response to "GetStatus" succeeds

    Examples: lines that are not ServiceMessages
      | what                     | line                                | answer | error                                           |
      | malformed JSON           | {"message": "GetStatus", "data": [} | Error  | malformed JSON: Expecting value at character 34 |
      | a list, not an object    | ["GetStatus"]                       | Error  | a message must be a JSON object, not a list     |
      | a message without a name | {"data": []}                        | Error  | field "message" must be a non-empty string      |
      | a name that is no string | {"message": 7, "data": []}          | Error  | field "message" must be a non-empty string      |

    Examples: ServiceMessages whose name can be read, answered by that name
      | what                          | line                                                   | answer    | error                                              |
      | a field of the wrong type     | {"message": "GetStatus", "data": "none"}               | GetStatus | field "data" must be a list, not a string          |
      | an unknown field              | {"message": "GetStatus", "data": [], "extra": 1}       | GetStatus | unknown field(s) 'extra'                           |
      | a request for another server  | {"message": "Pause", "service": "OTHER", "data": []}   | Pause     | this socket serves AE title 'PACS_A', not 'OTHER'  |

    Examples: requests that cannot be served as sent
      | what                            | line                                                                                            | answer           | error                                                                                        |
      | a notification sent as request  | {"message": "ClientConnect", "data": []}                                                        | ClientConnect    | 'ClientConnect' is a notification, not a request                                             |
      | too few data items              | {"message": "RemoveAeTitle", "data": []}                                                        | RemoveAeTitle    | RemoveAeTitle takes 1 data item(s): ae_title (an AE title string); got 0                     |
      | too many data items             | {"message": "GetStatus", "data": [1]}                                                           | GetStatus        | GetStatus takes 0 data item(s): nothing; got 1                                               |
      | a client id that is a string    | {"message": "GetAssociation", "data": ["3"]}                                                    | GetAssociation   | GetAssociation data[0] (client_id): must be a client id (integer), not a string              |
      | a client that is a boolean      | {"message": "DisconnectClient", "data": [true]}                                                 | DisconnectClient | DisconnectClient data[0] (client): must be a ClientInfo object or a client id, not a boolean |
      | a port that is a string         | {"message": "AddAeTitle", "data": [{"ae_title": "X", "host": "h", "port": "104"}]}              | AddAeTitle       | AddAeTitle data[0] (info): AeInfo port must be an integer 1-65535, not '104'                 |
      | an AeInfo without its port      | {"message": "AddAeTitle", "data": [{"ae_title": "X", "host": "h"}]}                             | AddAeTitle       | AddAeTitle data[0] (info): AeInfo lacks 'port'                                               |
      | an AeInfo with an unknown field | {"message": "AddAeTitle", "data": [{"ae_title": "X", "host": "h", "port": 1, "colour": "red"}]} | AddAeTitle       | AddAeTitle data[0] (info): unknown AeInfo field(s) 'colour'                                  |

  Scenario: An unknown message is answered with the names the server knows
    When a raw admin connection to "PACS_A" sends: {"message": "GetPatients", "data": []}
    Then the response to "GetPatients" fails with an error starting "unknown message 'GetPatients'; known: GetAeTitles, AddAeTitle,"
    And the error names each of GetAeTitles, AddAeTitle, UpdateAeTitle, RemoveAeTitle, DisconnectClient, GetClients, GetAssociation, Pause, Resume, GetStatus, GetAddIns, GetSettings

  Scenario: A line that is not UTF-8 is answered, and the connection carries on
    When a raw admin connection to "PACS_A" sends a line that is not UTF-8
    Then the response to "Error" fails with error "malformed message: not UTF-8 (invalid start byte)"
    When the raw admin connection to "PACS_A" sends: {"message": "GetStatus", "data": []}
    Then the response to "GetStatus" succeeds

  Scenario: AE titles and AE entries that fail validation are refused in the table's own words
    When the administrator of "PACS_A" sends "AddAeTitle" with data
      """
      [{"ae_title": "THIS_IS_SEVENTEEN", "host": "127.0.0.1", "port": 104}]
      """
    Then the response to "AddAeTitle" fails with error "AddAeTitle data[0] (info): ae_title = "THIS_IS_SEVENTEEN" has 17 significant characters, at most 16 are allowed; allowed: 1-16 printable ASCII characters without backslash, not all spaces (leading and trailing spaces are ignored)"
    When the administrator of "PACS_A" sends "AddAeTitle" with data
      """
      [{"ae_title": "BAD\\AE", "host": "127.0.0.1", "port": 104}]
      """
    Then the response to "AddAeTitle" fails with an error starting "AddAeTitle data[0] (info): ae_title = "BAD\\AE" must not contain a backslash (the DICOM value separator)"
    When the administrator of "PACS_A" sends "AddAeTitle" with data
      """
      [{"ae_title": "PORT_AE", "host": "127.0.0.1", "port": 70000}]
      """
    Then the response to "AddAeTitle" fails with error "AddAeTitle data[0] (info): AE title 'PORT_AE': port = 70000 is out of range; allowed: an integer 1-65535"
    When the administrator of "PACS_A" sends "AddAeTitle" with data
      """
      [{"ae_title": "HOST_AE", "host": "bad host!", "port": 104}]
      """
    Then the response to "AddAeTitle" fails with an error starting "AddAeTitle data[0] (info): AE title 'HOST_AE': host = "bad host!" has the label 'bad host!', which is not letters, digits and inner hyphens"
    When the administrator of "PACS_A" sends "UpdateAeTitle" with data
      """
      ["  ", {"ae_title": "SPACES", "host": "127.0.0.1", "port": 104}]
      """
    Then the response to "UpdateAeTitle" fails with an error starting "UpdateAeTitle data[0] (old_ae_title): ae_title = "  " must not consist only of spaces"
    And the AE title table of "PACS_A" does not list "PORT_AE"
    And the AE title table of "PACS_A" does not list "HOST_AE"

  Scenario: Duplicate and unknown AE titles, and unknown clients, are refused
    Given the AE title table of "PACS_A" has "DUP_AE" at 127.0.0.1 port 104
    When the administrator of "PACS_A" sends "AddAeTitle" with data
      """
      [{"ae_title": "DUP_AE", "host": "127.0.0.2", "port": 105}]
      """
    Then the response to "AddAeTitle" fails with error "AE title 'DUP_AE' already exists"
    And the AE title table of "PACS_A" lists "DUP_AE" at 127.0.0.1 port 104
    When the administrator of "PACS_A" sends "RemoveAeTitle" with data
      """
      ["NEVER_ADDED"]
      """
    Then the response to "RemoveAeTitle" fails with error "AE title 'NEVER_ADDED' does not exist"
    When the administrator of "PACS_A" sends "UpdateAeTitle" with data
      """
      ["NEVER_ADDED", {"ae_title": "NEVER_ADDED", "host": "127.0.0.1", "port": 104}]
      """
    Then the response to "UpdateAeTitle" fails with error "AE title 'NEVER_ADDED' does not exist"
    When the administrator of "PACS_A" sends "DisconnectClient" with data
      """
      [999999]
      """
    Then the response to "DisconnectClient" fails with error "no connected client with id 999999"
    When the administrator of "PACS_A" sends "GetAssociation" with data
      """
      [999999]
      """
    Then the response to "GetAssociation" fails with error "no connected client with id 999999"

  Scenario: A line over 1 MiB closes only that admin connection; the rest carries on
    Given the administrator of "PACS_A" is connected
    When a raw admin connection to "PACS_A" sends a line of 1 MiB and one byte more
    Then the response to "Error" fails with error "line longer than 1048576 bytes refused; closing this admin connection"
    And the server "PACS_A" closes that raw admin connection
    When the administrator of "PACS_A" sends "GetStatus"
    Then the response to "GetStatus" succeeds
    When the modality "CT_AFTER" sends a C-ECHO to server "PACS_A"
    Then the echo succeeds
