@fixture.pacsref.servers
Feature: Following what happens on a server through its notifications
  As a PACS administrator running two servers on one host
  I want to be told, as it happens, who connects to a server, what they do, how they leave, whom
  the server refused, whom it timed out, when it was paused or resumed, and when it stops
  So that I can see a modality's trouble while it happens, on the right server

  Every administrative connection is subscribed: the server pushes each notification to all of
  its admin connections (docs/admin-protocol.md, "Notifications"). The modalities are the
  repository's simulators (pynetdicom's Verification SCU, and `python -m simulators raw` for
  the peers that misbehave). An administrator watching one server must hear nothing of the
  other. PACS_A drops an associated client that says nothing for 2 seconds. A stop is not a
  pause: its watchers hear ServerStopping (how long the open clients have, and how many there
  are), then how each of those clients ended, and only then does the admin connection close.

  In the tables, a blank cell is not checked and "-" means the field is empty.

  Background:
    Given these servers run side by side in one root folder
      | server | settings         |
      | PACS_A | client_timeout=2 |
      | PACS_B |                  |
    And an administrator watches the notifications of "PACS_A"
    And an administrator watches the notifications of "PACS_B"

  Scenario: A modality's visit, from connection to release, is told to the watcher of its server only
    When the modality "CT_NOTE" sends a C-ECHO to server "PACS_A"
    Then the echo succeeds
    And the watcher of "PACS_A" receives these notifications about "CT_NOTE", in order
      | notification       | calling AE | called AE | address   | state      | action    | how      |
      | ClientConnect      | -          | -         | 127.0.0.1 | connected  |           |          |
      | ClientAssociated   | CT_NOTE    | PACS_A    | 127.0.0.1 | associated |           |          |
      | ClientAction       | CT_NOTE    |           |           |            | C-ECHO-RQ |          |
      | ClientDisconnected | CT_NOTE    | PACS_A    | 127.0.0.1 | ended      |           | released |
    And the watcher of "PACS_B" has received nothing about "CT_NOTE"
    When the modality "MR_NOTE" sends a C-ECHO to server "PACS_B"
    Then the watcher of "PACS_B" receives these notifications about "MR_NOTE", in order
      | notification       | calling AE | called AE | action    | how      |
      | ClientConnect      | -          | -         |           |          |
      | ClientAssociated   | MR_NOTE    | PACS_B    |           |          |
      | ClientAction       | MR_NOTE    |           | C-ECHO-RQ |          |
      | ClientDisconnected | MR_NOTE    | PACS_B    |           | released |
    And the watcher of "PACS_A" has received nothing about "MR_NOTE"

  Scenario: A refused association is told with its rejection and the rule that refused it
    When the modality "NM_WRONG" calls server "PACS_A" by a wrong AE title
    Then the watcher of "PACS_A" receives these notifications about "NM_WRONG", in order
      | notification       | calling AE | called AE  | rejection | rule            | how                                                                   |
      | ClientConnect      | -          | -          |           |                 |                                                                       |
      | AssociationRefused | NM_WRONG   | NO-SUCH-AE | (1, 1, 7) | called-ae-title |                                                                       |
      | ClientDisconnected | -          | -          |           |                 | refused: called AE title 'NO-SUCH-AE' is not this server's ('PACS_A') |
    And the watcher of "PACS_B" has received nothing about "NM_WRONG"

  Scenario: A modality that falls silent is timed out, and the watcher is told how long it waited
    When the modality "DX_IDLE" associates with server "PACS_A" and then stays silent
    Then the watcher of "PACS_A" receives these notifications about "DX_IDLE", in order
      | notification       | calling AE | state      | timeout | how            |
      | ClientConnect      | -          | connected  |         |                |
      | ClientAssociated   | DX_IDLE    | associated |         |                |
      | ClientTimedOut     | DX_IDLE    | associated | 2       |                |
      | ClientDisconnected | DX_IDLE    | ended      |         | client timeout |
    And the watcher of "PACS_B" has received nothing about "DX_IDLE"

  Scenario: A client the administrator disconnects is told as disconnected
    Given the modality "US_GONE" holds an association with server "PACS_B"
    When the administrator of "PACS_B" sends "DisconnectClient" with data
      """
      [<client id of "US_GONE" on "PACS_B">]
      """
    Then the response to "DisconnectClient" succeeds
    And the watcher of "PACS_B" receives these notifications about "US_GONE", in order
      | notification       | calling AE | state      | how                               |
      | ClientConnect      | -          | connected  |                                   |
      | ClientAssociated   | US_GONE    | associated |                                   |
      | ClientDisconnected | US_GONE    | ended      | disconnected by the administrator |
    And the watcher of "PACS_A" has received nothing about "US_GONE"

  Scenario: Pausing and resuming a server is told to its watchers, not to the other server's
    When the administrator of "PACS_A" sends "Pause"
    And the pause is undone at the end of the scenario
    Then the watcher of "PACS_A" receives "ServerPaused" with no data
    When the administrator of "PACS_A" sends "Resume"
    Then the watcher of "PACS_A" receives "ServerResumed" with no data
    And the watcher of "PACS_B" has received no "ServerPaused"
    And the watcher of "PACS_B" has received no "ServerResumed"

  @fixture.pacsref.root
  Scenario: A stop is told as ServerStopping, and the watcher hears the last client leave before the end
    Given I have run "pacsref server add STOPPER --port <a free port> --ip-address 127.0.0.1 --set stop_timeout=2"
    And I have run "pacsref server start STOPPER"
    And an administrator watches the notifications of "STOPPER"
    And the modality "CT_HELD" holds an association with server "STOPPER"
    When I run "pacsref server stop STOPPER"
    Then it succeeds
    And the held association of "CT_HELD" has been aborted by the server
    And the watcher of "STOPPER" receives exactly these notifications, then the server closes its connection
      | notification       | calling AE | timeout | clients | how                                  |
      | ClientConnect      | -          |         |         |                                      |
      | ClientAssociated   | CT_HELD    |         |         |                                      |
      | ServerStopping     |            | 2       | 1       |                                      |
      | ClientDisconnected | CT_HELD    |         |         | server stopping: stop_timeout passed |
