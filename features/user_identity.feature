Feature: User identity
  As a PACS administrator
  I want modalities to say which user sends, and the server to check it against its user table
  So that only known users get in, and every association says who it was

  A requestor may put a User Identity in its association request (PS3.7 D.3.3.7): a username,
  or a username and passcode. The "users" add-in ships with every server and checks them
  against the accounts file of the server directory, user-accounts.toml, whose passcodes are
  scrypt hashes made with "python -m pacsref.shipped_addins.users hash". Without that
  file nothing is checked, as on a server that does not support user identities. The
  modality is DCMTK's storescu (--user, --password, --pos-response). Every scenario gets a
  new server.

  Background:
    Given a pacsref server with AE title "PACSREF"

  @fixture.pacsref.server @dcmtk
  Scenario: Without an accounts file the user is carried, not checked
    When DCMTK's storescu stores an image as user "alice" with password "secret"
    Then DCMTK's storescu succeeds
    And the server log says "user username and passcode 'alice' not verified"

  @fixture.pacsref.server @dcmtk
  Scenario: A listed user stores; a wrong password is rejected and logged without it
    Given the accounts file lists "alice" with passcode "secret"
    When DCMTK's storescu stores an image as user "alice" with password "secret", asking for a positive response
    Then DCMTK's storescu succeeds
    And the server log says "user username and passcode 'alice' verified"
    When DCMTK's storescu stores an image as user "alice" with password "guess"
    Then DCMTK's storescu is rejected with (1, 2, 1)
    And the server log says "refused user 'alice' from STORESCU"
    And the server log never shows "guess" or "secret"

  @fixture.pacsref.server @dcmtk
  Scenario: An account without passcode enters with its username alone, and only it
    Given the accounts file lists "ct-room-1" without passcode
    And the accounts file lists "alice" with passcode "secret"
    When DCMTK's storescu stores an image as user "ct-room-1"
    Then DCMTK's storescu succeeds
    When DCMTK's storescu stores an image as user "alice"
    Then DCMTK's storescu is rejected with (1, 2, 1)
    When DCMTK's storescu stores an image as user "mallory" with password "secret"
    Then DCMTK's storescu is rejected with (1, 2, 1)

  @fixture.pacsref.server @dcmtk
  Scenario: With require_identity, a modality that names no user is rejected
    Given the accounts file lists "alice" with passcode "secret"
    And the users option "require_identity" is true
    When DCMTK's storescu stores an image without a user identity
    Then DCMTK's storescu is rejected with (1, 2, 1)
    When DCMTK's storescu stores an image as user "alice" with password "secret"
    Then DCMTK's storescu succeeds

  @fixture.pacsref.server @dcmtk
  Scenario: A user added to the accounts file may store at once, without a restart
    Given the accounts file lists "alice" with passcode "secret"
    When DCMTK's storescu stores an image as user "bob" with password "hunter2"
    Then DCMTK's storescu is rejected with (1, 2, 1)
    When the accounts file of the running server also lists "bob" with passcode "hunter2"
    And DCMTK's storescu stores an image as user "bob" with password "hunter2"
    Then DCMTK's storescu succeeds
