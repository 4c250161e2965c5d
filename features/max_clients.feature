Feature: Max clients
  As a PACS administrator
  I want a limit on how many clients the server serves at once, and a clear refusal beyond it
  So that a burst of modalities cannot exhaust the server, and each one refused knows to try again later

  Max Clients counts the connections the server serves at the same time. One more is refused
  with A-ASSOCIATE-RJ (2, 3, 2): transient, from the service provider (presentation related
  function), local limit exceeded (PS3.8 Table 9-21). "Transient" tells the modality to retry
  later, so the refusal must come at once: never a hang until the modality's own timeout, never
  a bare TCP close that looks like a crash. A place is given back as soon as an association
  ends, and a refused modality never takes one. The crowds are raw peers that connect, then all
  send their A-ASSOCIATE-RQ, then read their answers, as when a department's modalities start
  together.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server
  Scenario Outline: With max clients <max>, one more modality is refused at once (<client>)
    Given the server setting "max_clients" is "<max>"
    And <max> modalities hold associations with the server
    When the modality "ONE_MORE" sends a C-ECHO to "PACSREF" with <client>
    Then the association is rejected as "local limit exceeded" (2, 3, 2) within 1 second
    And every held association still answers a C-ECHO

    Examples: pynetdicom
      | max | client     |
      | 1   | pynetdicom |
      | 3   | pynetdicom |

    @dcmtk
    Examples: DCMTK
      | max | client        |
      | 2   | DCMTK echoscu |

  @fixture.pacsref.server
  Scenario Outline: A burst of <count> modalities at a server with max clients <max>
    Given the server setting "max_clients" is "<max>"
    When <count> modalities request associations at the same moment
    Then <max> of them are accepted
    And the other <refused> are rejected as "local limit exceeded" (2, 3, 2)
    And every one of them is answered within 1 second

    Examples:
      | max | count | refused |
      | 1   | 10    | 9       |
      | 5   | 20    | 15      |

  @fixture.pacsref.server
  Scenario: A released association gives its place back; refused modalities never take one
    Given the server setting "max_clients" is "1"
    And the modality "CT_ROOM_1" holds an association with the server
    When 5 modalities request associations at the same moment
    Then 0 of them are accepted
    When the modality "CT_ROOM_1" releases its association
    And the modality "ONE_MORE" sends a C-ECHO to "PACSREF" with pynetdicom
    Then the echo succeeds
