@fixture.pacsref.servers
Feature: Administering two running servers through their administrative sockets
  As a PACS administrator running two servers on one host
  I want to look at and change each running server through its own administrative socket
  So that I can manage AE titles, clients and pauses without restarting anything, and without
  touching the other server by mistake

  Each server answers newline-delimited JSON ServiceMessages on <server dir>/admin/<AE>.sock
  (docs/admin-protocol.md). Two servers run side by side in one root folder: PACS_A admits only
  the AE titles in its table (Allow Anonymous off), PACS_B admits anyone. Every request is sent
  to one of them, and the other is checked to be untouched. The servers are shared by the
  scenarios of this feature, so each scenario uses AE titles of its own.

  Background:
    Given these servers run side by side in one root folder
      | server | settings              |
      | PACS_A | allow_anonymous=false |
      | PACS_B |                       |

  Scenario: Each server reports its own status, settings and add-ins
    When the administrator of "PACS_A" sends "GetStatus"
    Then the response to "GetStatus" succeeds with data
      """
      [{"state": "running", "counters": {"timeouts": 0}}]
      """
    When the administrator of "PACS_A" sends "GetSettings"
    Then the response to "GetSettings" succeeds with data
      """
      [{"ae_title": "PACS_A", "allow_anonymous": false, "ip_address": "127.0.0.1"}]
      """
    When the administrator of "PACS_B" sends "GetSettings"
    Then the response to "GetSettings" succeeds with data
      """
      [{"ae_title": "PACS_B", "allow_anonymous": true, "ip_address": "127.0.0.1"}]
      """
    When the administrator of "PACS_B" sends "GetAddIns"
    Then the response to "GetAddIns" succeeds with data
      """
      [[{"name": "security"}, {"name": "storage"}, {"name": "users"}, {"name": "verification"}], []]
      """

  Scenario: An AE title added to one server is admitted there at once, and only there
    When the modality "CT_LIVE" asks server "PACS_A" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
    When the administrator of "PACS_A" sends "AddAeTitle" with data
      """
      [{"ae_title": "CT_LIVE", "host": "127.0.0.1", "port": 104, "description": "CT room 1"}]
      """
    Then the response to "AddAeTitle" succeeds with data
      """
      [{"ae_title": "CT_LIVE", "host": "127.0.0.1", "port": 104, "description": "CT room 1",
        "move_destination": true, "secure": false}]
      """
    And the AE title table of "PACS_A" lists "CT_LIVE" at 127.0.0.1 port 104
    And the AE title table of "PACS_B" does not list "CT_LIVE"
    When the modality "CT_LIVE" sends a C-ECHO to server "PACS_A"
    Then the echo succeeds
    When the administrator of "PACS_A" sends "GetAeTitles"
    Then the response to "GetAeTitles" succeeds

  Scenario: Renaming and removing an AE title take effect at once
    Given the AE title table of "PACS_A" has "MR_OLD" at 127.0.0.1 port 104
    When the administrator of "PACS_A" sends "UpdateAeTitle" with data
      """
      ["MR_OLD", {"ae_title": "MR_NEW", "host": "127.0.0.1", "port": 11112, "secure": false}]
      """
    Then the response to "UpdateAeTitle" succeeds with data
      """
      ["MR_OLD", {"ae_title": "MR_NEW", "host": "127.0.0.1", "port": 11112,
                  "description": "", "move_destination": true, "secure": false}]
      """
    And the AE title table of "PACS_A" lists "MR_NEW" at 127.0.0.1 port 11112
    And the AE title table of "PACS_A" does not list "MR_OLD"
    When the modality "MR_OLD" asks server "PACS_A" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
    When the modality "MR_NEW" asks server "PACS_A" for an association
    Then the association is accepted
    When the administrator of "PACS_A" sends "RemoveAeTitle" with data
      """
      ["MR_NEW"]
      """
    Then the response to "RemoveAeTitle" succeeds with data
      """
      ["MR_NEW"]
      """
    And the AE title table of "PACS_A" does not list "MR_NEW"
    When the modality "MR_NEW" asks server "PACS_A" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)

  Scenario: Clients are listed, viewed and disconnected on their own server only
    Given the modality "US_HELD" holds an association with server "PACS_B"
    When the administrator of "PACS_B" sends "GetClients"
    Then the response to "GetClients" succeeds with data
      """
      [[{"ae_title": "US_HELD", "called_ae_title": "PACS_B", "ip": "127.0.0.1",
         "state": "associated"}]]
      """
    And the clients of "PACS_A" are none
    When the administrator of "PACS_B" sends "GetAssociation" with data
      """
      [<client id of "US_HELD" on "PACS_B">]
      """
    Then the response to "GetAssociation" succeeds with data
      """
      [{"calling_ae_title": "US_HELD", "called_ae_title": "PACS_B",
        "contexts": [{"abstract_syntax": "1.2.840.10008.1.1", "peer_scu": true,
                      "peer_scp": false}]}]
      """
    When the administrator of "PACS_A" sends "GetAssociation" with data
      """
      [<client id of "US_HELD" on "PACS_B">]
      """
    Then the response to "GetAssociation" fails with error "no connected client with id <client id of "US_HELD" on "PACS_B">"
    When the administrator of "PACS_A" sends "DisconnectClient" with data
      """
      [<client id of "US_HELD" on "PACS_B">]
      """
    Then the response to "DisconnectClient" fails with error "no connected client with id <client id of "US_HELD" on "PACS_B">"
    When the administrator of "PACS_B" sends "DisconnectClient" with data
      """
      [<client id of "US_HELD" on "PACS_B">]
      """
    Then the response to "DisconnectClient" succeeds
    And the held association of "US_HELD" has been aborted by the server
    And the clients of "PACS_B" are none

  Scenario: Pausing one server refuses new associations there while the other goes on
    Given the AE title table of "PACS_A" has "XA_PAUSE" at 127.0.0.1 port 104
    When the administrator of "PACS_A" sends "Pause"
    And the pause is undone at the end of the scenario
    Then the response to "Pause" succeeds with data
      """
      ["paused"]
      """
    And the status of "PACS_A" says "paused" with 0 connected clients
    And the status of "PACS_B" says "running" with 0 connected clients
    When the modality "XA_PAUSE" asks server "PACS_A" for an association
    Then the association is rejected as "temporary congestion" (2, 3, 1)
    When the modality "XA_PAUSE" sends a C-ECHO to server "PACS_B"
    Then the echo succeeds
    When the administrator of "PACS_A" sends "Pause"
    Then the response to "Pause" succeeds with data
      """
      ["paused"]
      """
    When the administrator of "PACS_A" sends "Resume"
    Then the response to "Resume" succeeds with data
      """
      ["running"]
      """
    When the modality "XA_PAUSE" sends a C-ECHO to server "PACS_A"
    Then the echo succeeds
    When the administrator of "PACS_A" sends "Resume"
    Then the response to "Resume" succeeds with data
      """
      ["running"]
      """
    And the status of "PACS_A" says "running" with 0 connected clients

  @fixture.pacsref.root
  Scenario: A server whose admin socket or temporary directory cannot be used does not start, and says why in one line
    Given I have run "pacsref server add BLOCKED --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server add TAKEN --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server add NOSPOOL --port <a free port> --ip-address 127.0.0.1"
    And a file that is not a socket lies where the admin socket of "BLOCKED" goes
    And another program listens on the admin socket of "TAKEN"
    And the settings file of "NOSPOOL" says temporary_directory = "/proc/nope"
    When I run "pacsref server start BLOCKED"
    Then it fails, saying "admin/BLOCKED.sock exists and is not a socket; remove it"
    And the server "BLOCKED" no longer listens on its port
    And the file where the admin socket of "BLOCKED" goes is still there
    When I run "pacsref server start TAKEN"
    Then it fails, saying "another server is already listening on <root>/TAKEN/admin/TAKEN.sock"
    And the server "TAKEN" no longer listens on its port
    When I run "pacsref server start NOSPOOL"
    Then it fails, saying "settings.toml: temporary_directory = "/proc/nope" cannot create the directory /proc/nope (No such file or directory)"
    And the server "NOSPOOL" no longer listens on its port
    And "pacsref server list" shows
      | NAME    | STATE   | PID |
      | BLOCKED | stopped | -   |
      | NOSPOOL | stopped | -   |
      | TAKEN   | stopped | -   |
