Feature: Managing the servers of one root folder with the pacsref command
  As a PACS administrator
  I want one command to add, start, stop, pause and inspect the servers of a root folder, and to
  manage their AE titles and clients while they run
  So that I do not have to remember twistd command lines, pidfiles or socket paths

  `pacsref --root ROOT ...` (docs/manager.md) runs here as an administrator runs it, in a root
  folder of its own for each scenario; every server it starts is a real twistd daemon, stopped
  when the scenario ends whatever happened. A failing command prints one line "pacsref: <reason>"
  and exits 1; a command line it cannot understand prints one such line and exits 2.

  @fixture.pacsref.root
  Scenario: Two servers in one root folder are started, paused, resumed and stopped one by one
    When I run "pacsref server add NORTH --port <a free port> --ip-address 127.0.0.1"
    Then it succeeds, printing "added server NORTH in <root>/NORTH"
    Given I have run "pacsref server add SOUTH --port <a free port> --ip-address 127.0.0.1"
    Then "pacsref server list" shows
      | NAME  | STATE   | PID |
      | NORTH | stopped | -   |
      | SOUTH | stopped | -   |
    When I run "pacsref server start NORTH"
    Then it succeeds, printing "started NORTH (pid"
    And "pacsref server list" shows
      | NAME  | STATE   | PID     |
      | NORTH | running | its pid |
      | SOUTH | stopped | -       |
    When I run "pacsref server start NORTH"
    Then it fails, saying "server NORTH is already running (pid"
    When I run "pacsref server start SOUTH"
    Then it succeeds, printing "started SOUTH (pid"
    When I run "pacsref server pause NORTH"
    Then it succeeds, printing "paused NORTH"
    And "pacsref server list" shows
      | NAME  | STATE   | PID     |
      | NORTH | paused  | its pid |
      | SOUTH | running | its pid |
    And "pacsref server status NORTH" says "paused" with 0 connected clients
    When the modality "CT_MGR" asks server "NORTH" for an association
    Then the association is rejected as "temporary congestion" (2, 3, 1)
    When the modality "CT_MGR" sends a C-ECHO to server "SOUTH"
    Then the echo succeeds
    When I run "pacsref server resume NORTH"
    Then it succeeds, printing "resumed NORTH"
    And "pacsref server status NORTH" says "running" with 0 connected clients
    When the modality "CT_MGR" sends a C-ECHO to server "NORTH"
    Then the echo succeeds
    When I run "pacsref server stop NORTH"
    Then it succeeds, printing "stopped NORTH (pid"
    And the server "NORTH" no longer listens on its port
    And "pacsref server list" shows
      | NAME  | STATE   | PID     |
      | NORTH | stopped | -       |
      | SOUTH | running | its pid |
    When I run "pacsref server status NORTH"
    Then it ends with exit status 3, printing "NORTH: stopped"
    When I run "pacsref server stop NORTH"
    Then it fails, saying "server NORTH is not running"
    When I run "pacsref server stop SOUTH"
    Then it succeeds, printing "stopped SOUTH (pid"

  @fixture.pacsref.root
  Scenario: A server does not start when its port is taken, when it is disabled, or when it is unknown
    Given I have run "pacsref server add BUSY --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server add OFF --port <a free port> --ip-address 127.0.0.1 --set start_mode=disabled"
    And another program listens on the port of "BUSY"
    When I run "pacsref server start BUSY"
    Then it fails, saying "port <port of BUSY> is in use"
    When I run "pacsref server start OFF"
    Then it fails, saying "server OFF has Start Mode "disabled" and refuses to start; allow it first: pacsref server edit OFF --start-mode manual"
    When I run "pacsref server start NOSUCH"
    Then it fails, saying "unknown server 'NOSUCH' (no <root>/NOSUCH/settings.toml)"
    And "pacsref server list" shows
      | NAME | STATE   | PID |
      | BUSY | stopped | -   |
      | OFF  | stopped | -   |

  @fixture.pacsref.root
  Scenario: start-all starts only the automatic servers; stop-all stops every running one
    Given I have run "pacsref server add AUTO --port <a free port> --ip-address 127.0.0.1 --set start_mode=automatic"
    And I have run "pacsref server add MANUAL --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server add OFF --port <a free port> --ip-address 127.0.0.1 --set start_mode=disabled"
    When I run "pacsref server start-all"
    Then it succeeds, printing "started AUTO (pid"
    And the output does not mention "MANUAL"
    And the output does not mention "OFF"
    And "pacsref server list" shows
      | NAME   | STATE   | PID     |
      | AUTO   | running | its pid |
      | MANUAL | stopped | -       |
      | OFF    | stopped | -       |
    When I run "pacsref server start-all"
    Then it succeeds
    And the output does not mention "AUTO"
    Given I have run "pacsref server start MANUAL"
    When I run "pacsref server stop-all"
    Then it succeeds, printing "stopped AUTO (pid"
    And the output has a line matching "^stopped MANUAL \(pid \d+\)$"
    And "pacsref server list" shows
      | NAME   | STATE   | PID |
      | AUTO   | stopped | -   |
      | MANUAL | stopped | -   |
      | OFF    | stopped | -   |

  @fixture.pacsref.root
  Scenario: A systemd unit runs the server in the foreground
    Given I have run "pacsref server add NORTH --port <a free port> --ip-address 127.0.0.1"
    When I run "pacsref server unit NORTH"
    Then the output is a systemd unit that runs "NORTH" in the foreground

  @fixture.pacsref.root
  Scenario: AE titles of a running server are listed, added, updated and removed, and apply at once
    Given I have run "pacsref server add STRICT --port <a free port> --ip-address 127.0.0.1 --set allow_anonymous=false"
    And I have run "pacsref server start STRICT"
    When the modality "CR_NEW" asks server "STRICT" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
    When I run "pacsref ae add STRICT CR_NEW --host 127.0.0.1 --port 104 --description 'CR room'"
    Then it succeeds
    And the output has a line matching "^CR_NEW +127\.0\.0\.1:104  move_destination  CR room$"
    When I run "pacsref ae list STRICT"
    Then the output has a line matching "^CR_NEW +127\.0\.0\.1:104  move_destination  CR room$"
    When the modality "CR_NEW" asks server "STRICT" for an association
    Then the association is accepted
    When I run "pacsref ae update STRICT CR_NEW --new-ae-title CR_RENAMED --port 105 --no-move-destination"
    Then it succeeds
    When I run "pacsref ae list STRICT"
    Then the output has a line matching "^CR_RENAMED +127\.0\.0\.1:105  -  CR room$"
    And the output does not mention "CR_NEW"
    When the modality "CR_NEW" asks server "STRICT" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
    When the modality "CR_RENAMED" asks server "STRICT" for an association
    Then the association is accepted
    When I run "pacsref ae remove STRICT CR_RENAMED"
    Then it succeeds, printing "removed CR_RENAMED from STRICT"
    When I run "pacsref ae list STRICT"
    Then the output does not mention "CR_RENAMED"
    When I run "pacsref ae remove STRICT CR_RENAMED"
    Then it fails, saying "server STRICT: RemoveAeTitle failed: AE title 'CR_RENAMED' does not exist"
    When I run "pacsref ae add STRICT FAR_TOO_LONG_AE_TITLE --host 127.0.0.1 --port 104"
    Then it fails, saying "server STRICT: AddAeTitle failed: AddAeTitle data[0] (info): ae_title = "FAR_TOO_LONG_AE_TITLE" has 21 significant characters, at most 16 are allowed"

  @fixture.pacsref.root
  Scenario: Clients of a running server are listed, watched live and disconnected
    Given I have run "pacsref server add NORTH --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server add SOUTH --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server start NORTH"
    And I have run "pacsref server start SOUTH"
    When I start "pacsref clients watch NORTH" in the background
    And the modality "US_HELD" holds an association with server "NORTH"
    And I run "pacsref clients list NORTH"
    Then it succeeds
    And the output has a line matching "^ +\d+  127\.0\.0\.1:\d+ +US_HELD +associated +\d{4}-\d\d-\d\dT"
    And the watch prints a line matching "^\d\d:\d\d:\d\d ClientAssociated +#\d+ 127\.0\.0\.1:\d+ US_HELD -> NORTH$"
    When I run "pacsref clients list SOUTH"
    Then the output does not mention "US_HELD"
    When I run "pacsref clients disconnect NORTH <client id of "US_HELD" on "NORTH">"
    Then it succeeds, printing "disconnected client <client id of "US_HELD" on "NORTH"> from NORTH"
    And the held association of "US_HELD" has been aborted by the server
    And the watch prints a line matching "ClientDisconnected +#\d+ 127\.0\.0\.1:\d+ US_HELD \(disconnected by the administrator\)$"
    When I run "pacsref clients disconnect NORTH 999999"
    Then it fails, saying "server NORTH: DisconnectClient failed: no connected client with id 999999"
    When the modality "CT_WATCHED" sends a C-ECHO to server "NORTH"
    Then the watch prints a line matching "ClientAction +#\d+ CT_WATCHED C-ECHO-RQ$"
    When the modality "MR_SOUTH" sends a C-ECHO to server "SOUTH"
    And the modality "CT_LAST" sends a C-ECHO to server "NORTH"
    Then the watch prints a line matching "ClientDisconnected +#\d+ 127\.0\.0\.1:\d+ CT_LAST \(released\)$"
    When I press Ctrl-C in the watch
    Then the watch ends with exit status 0, its last words on standard error being "watching NORTH (running); Ctrl-C to stop"
    And the watch printed nothing about "MR_SOUTH"

  @fixture.pacsref.root
  Scenario: The JSON watch prints the raw notifications, and ends when its server stops
    Given I have run "pacsref server add NORTH --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server start NORTH"
    When I start "pacsref clients watch NORTH --json" in the background
    And I run "pacsref server pause NORTH"
    Then the watch prints a line matching "^\{"message":"ServerPaused","service":"NORTH","success":true,"error":"","data":\[\]\}$"
    When I run "pacsref server stop NORTH"
    Then the watch ends with exit status 1, its last words on standard error being "pacsref: server NORTH closed the admin connection (stopped?)"
    And every line the watch printed is a notification ServiceMessage of "NORTH"

  @fixture.pacsref.root
  Scenario: A server name is one plain folder name inside the root folder
    When I run "pacsref server add ../ESCAPE --port <a free port>"
    Then it fails, saying "'../ESCAPE' cannot be used as a server name: it contains '/' (an AE title with '/' cannot name a server directory); a server name is its directory under the root: one path component, not empty, no '/', no NUL, not starting with '.'"
    When I run "pacsref server add .. --port <a free port>"
    Then it fails, saying "'..' cannot be used as a server name: it starts with '.'"
    When I run "pacsref server add WARD/3 --port <a free port>"
    Then it fails, saying "'WARD/3' cannot be used as a server name: it contains '/'"
    When I run "pacsref server start ../ESCAPE"
    Then it fails, saying "'../ESCAPE' cannot be used as a server name"
    Then the root folder holds no server, and nothing named "ESCAPE" was made next to it

  @fixture.pacsref.root
  Scenario: A server cannot be added where the system does not let it be made, and says why
    When I run "pacsref server add Q --root /proc --port <a free port>"
    Then it fails, saying "cannot create server directory /proc/Q: No such file or directory"
    When I run "pacsref server add NEWX --port <a free port> --temporary-directory /proc/nope"
    Then it fails, saying "cannot use temporary_directory '/proc/nope': cannot create /proc/nope: No such file or directory"
    When I run "pacsref server add NEWX --port <a free port> --addins ''"
    Then it fails, saying "--addins names no add-in; give NAME,... (known: security, storage, users, verification), or --addins none for a server without add-ins"
    Then the root folder holds no server, and nothing named "NEWX" was made next to it
    When I run "pacsref server add BARE --port <a free port> --addins none"
    Then it succeeds, printing "added server BARE"
    When I run "pacsref addins list BARE"
    Then it succeeds
    And the output does not mention "loaded"

  @fixture.pacsref.root
  Scenario: A second server on a port another one already uses is added with a warning
    Given I have run "pacsref server add ONE --port <a free port>"
    When I run "pacsref server add THREE --port <port of ONE> --ip-address 127.0.0.1"
    Then it succeeds, warning "server ONE also uses port <port of ONE> on 0.0.0.0; the two cannot run at the same time"

  @fixture.pacsref.root
  Scenario: A server whose settings file is broken is shown as broken, and start-all fails for it
    Given I have run "pacsref server add GOOD --port <a free port> --ip-address 127.0.0.1"
    And I have run "pacsref server add BAD --port <a free port> --ip-address 127.0.0.1 --start-mode automatic"
    And someone adds the line "port = = 3" to the settings file of "BAD"
    When I run "pacsref server list"
    Then it succeeds, warning "<root>/BAD/settings.toml: invalid TOML syntax"
    And the output has a line matching "^BAD +\? +\?  broken +-$"
    And the output has a line matching "^GOOD +GOOD +\d+  stopped +-$"
    When I run "pacsref server start-all"
    Then the errors are "pacsref: server BAD cannot be started: <root>/BAD/settings.toml: invalid TOML syntax" then "pacsref: 1 server(s) failed to start"
    When I run "pacsref server start BAD"
    Then it fails, saying "<root>/BAD/settings.toml: invalid TOML syntax"

  @fixture.pacsref.root
  Scenario: A command line the manager cannot understand is one line and exit status 2
    Given I have run "pacsref server add ONE --port <a free port> --ip-address 127.0.0.1"
    When I run "pacsref clients disconnect ONE abc"
    Then it is refused as bad usage, saying "pacsref: clients disconnect: argument id: expected an integer, not 'abc' (see: pacsref clients disconnect --help)"
    When I run "pacsref ae add ONE WS2 --host 127.0.0.1 --port abc"
    Then it is refused as bad usage, saying "pacsref: ae add: argument --port: expected an integer, not 'abc'"
    When I run "pacsref server frobnicate ONE"
    Then it is refused as bad usage, saying "argument COMMAND: invalid choice: 'frobnicate'"

  @fixture.pacsref.root
  Scenario: An add-in that does not load is one line, never a traceback
    Given I have run "pacsref server add ADX --port <a free port> --ip-address 127.0.0.1 --addins verification"
    And the server "ADX" has an add-in "broken.py" that does not import
    When I run "pacsref addins list ADX"
    Then it succeeds, warning "add-in broken not loaded: ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    And the output has a line matching "^broken +failed +ModuleNotFoundError"
    And the output has a line matching "^verification +loaded"
    And nothing was printed about a traceback

  @fixture.pacsref.root
  Scenario: AE titles of a stopped server are kept in its aetitles.toml and apply when it starts
    Given I have run "pacsref server add STRICT --port <a free port> --ip-address 127.0.0.1 --no-allow-anonymous"
    When I run "pacsref ae add STRICT CR_NEW --host 127.0.0.1 --port 104 --description 'CR room'"
    Then it succeeds
    And the output has a line matching "^CR_NEW +127\.0\.0\.1:104  move_destination  CR room$"
    When I run "pacsref ae update STRICT CR_NEW"
    Then it fails, saying "no change given; name what changes: --new-ae-title, --host, --port, --description, --[no-]move-destination, --[no-]secure"
    When I run "pacsref ae update STRICT CR_NEW --new-ae-title CR_ROOM --no-move-destination"
    Then it succeeds
    When I run "pacsref ae add STRICT CR_ROOM --host 127.0.0.1 --port 104"
    Then it fails, saying "server STRICT: AE title 'CR_ROOM' already exists"
    When I run "pacsref ae list STRICT"
    Then the output has a line matching "^CR_ROOM +127\.0\.0\.1:104  -  CR room$"
    And the output does not mention "CR_NEW"
    Given I have run "pacsref server start STRICT"
    When the modality "CR_ROOM" asks server "STRICT" for an association
    Then the association is accepted
    When the modality "CR_NEW" asks server "STRICT" for an association
    Then the association is rejected as "calling AE title not recognized" (1, 1, 3)
