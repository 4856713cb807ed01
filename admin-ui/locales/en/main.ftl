# civicflow pages, English.

app-name = Party-building and grid governance
nav-tasks = My tasks
nav-start = Start
checkin-title = Check-in code
checkin-how = Volunteers scan it with their phone's camera and press Submit on the page it opens.
checkin-valid-for = This code is valid for { $seconds } seconds and is renewed before it expires.
checkin-link = Check-in link (to forward if scanning fails)
checkin-not-now = Check-in is not open now, so there is no code to show.
checkin-show = Show the check-in code
checkin-scanned = Code scanned: submit to check in.
checkin-scan-first = Scan the code the organiser shows on site, then submit.
task-withdraw = Withdraw my sign-up
collect-places = { $taken } in, { $left } { $left ->
    [one] place
   *[other] places
} left{ $waiting ->
    [0] {""}
   *[other] , { $waiting } waiting
}
collect-entries = { $taken } in
rows-count = { $count } rows: show
form-stars = { $n ->
    [one] 1 star
   *[other] { $n } stars
}
nav-inbox = Messages
nav-dashboard = Figures
dashboard-title = Figures
dashboard-intro = The chosen kind of matter in the units you administer and below them, started on the chosen days (China time, both days included).
dashboard-started = Started
dashboard-closed = Closed
dashboard-closure-rate = Closure rate
dashboard-on-time-rate = On-time rate (closed with no step past its time limit)
dashboard-median = Median time to close
dashboard-figures = Overall
dashboard-weeks = Started per week
dashboard-week-of = Week of { $day }
dashboard-overdue = Overdue now, by the unit holding it
dashboard-overdue-none = No step is overdue now.
dashboard-slice-on-time = Closed on time
dashboard-slice-late = Closed late
dashboard-slice-open = Still open
dashboard-overdue-count = Overdue steps
dashboard-xlsx = Download Excel
dashboard-categories = Started by category (the frequent issues)
dashboard-category-none = No category
dashboard-rating = Average rating
dashboard-rating-value = { $mean } ({ $count } ratings)
dashboard-csv = Download CSV
dashboard-section = Section
dashboard-label = What
dashboard-value = Value
dashboard-days-reversed = The first day is after the last; choose again.
nav-audit = Event log
audit-title = Event log
audit-intro = Everything done in the units you administer and below them, newest first. Each record carries a hash of the one before it, so any change is found on verification.
audit-unit = Unit
audit-all-units = All units I administer
audit-workflow = Kind of matter
audit-person = Done by
audit-person-hint = Name or login
audit-from = From
audit-to = To
audit-verify = Verify the record chains
audit-changes = Changes by admins
audit-events = Records of the work
audit-everywhere = Everywhere
admin-workflow_published = { $who } published version { $version } of "{ $workflow }"
admin-overlay_published = { $who } published version { $version } of this unit's changes to "{ $workflow }"
admin-overlay_live = { $who } made version { $version } of this unit's changes to "{ $workflow }" the live one
admin-base_held = { $who } kept this unit on version { $version } of "{ $workflow }"
admin-plugin_published = { $who } uploaded the rule plugin { $plugin } { $version }
admin-plugin_bound = { $who } gave the rule "{ $rule }" of "{ $workflow }" to the plugin { $plugin } { $version }
admin-calendar_uploaded = { $who } uploaded the working-day calendar of { $year }
admin-other = { $who }: { $kind }
audit-empty = No records match.
audit-bad-day = "{ $day }" is not a date; write it as 2026-12-01.
audit-no-person = Nobody is called "{ $person }".
audit-many-people = Several people are called "{ $person }"; enter their login.
audit-chains-intact = Verified the record chains of { $count } matters: all intact.
audit-chains-broken = Verified the record chains of { $count } matters: { $broken } are broken; contact the technical staff.
inbox-title = My messages
inbox-empty = No messages.
inbox-read-all = Mark all read
inbox-unread = Unread
inbox-unread-count = { $count } unread
nav-done = Done
done-entered = {" "}({ $what })
done-entry_waitlisted = I am waiting in "{ $state }"
done-entry_withdrawn = I withdrew from "{ $state }"
done-title = What I have done
done-empty = You have not acted on anything yet.
done-task_completed = I did "{ $state }"
done-entry_submitted = I entered "{ $state }"
instance-now-at = Now at: { $states }
instance-updated = updated { $time }
nav-mine = Started by me
nav-sign-out = Sign out
nav-language = 中文
skip-to-content = Skip to content
signed-in-as = Signed in as { $name }

sign-in-title = Sign in
sign-in-login = Account or phone number
sign-in-password = Password
sign-in-submit = Sign in
sign-in-or = or
sign-in-code-title = Sign in with a one-time code
sign-in-code-request = Send me a code
sign-in-code = Code
sign-in-code-submit = Sign in with the code
sign-in-code-sent = A code is on its way, valid for 10 minutes (in demo mode, see the server log).
sign-in-failed = The account or password is wrong.
sign-in-code-failed = The code is wrong or has expired.
sign-in-throttled = Too many attempts; try again in { $minutes } minutes.
csrf-failed = This page has expired; go back, reload it and submit again.

tasks-title = My tasks
tasks-pool = Open to claim
tasks-mine-empty = Nothing to do.
tasks-total = { $count ->
    [one] 1 task
   *[other] { $count } tasks
}
list-more = Show more
tasks-pool-empty = Nothing open to claim.
tasks-filter-workflow = Process
tasks-filter-unit = Unit
tasks-filter-all = All
tasks-filter-apply = Filter
task-due-in = { $time } left
task-overdue = Overdue by { $time }
task-no-due = No time limit
task-claim = Claim
task-open = Open
task-view = View
task-assigned-role = For: { $role }
task-claimed-by = Claimed by { $name }
task-claimed = Claimed; it is yours to handle.
task-context = What this is about
task-done = Submitted.
duration-days = { $n ->
    [one] 1 day
   *[other] { $n } days
}
duration-hours = { $n ->
    [one] 1 hour
   *[other] { $n } hours
}
duration-minutes = { $n ->
    [one] 1 minute
   *[other] { $n } minutes
}

start-title = Start
start-empty = There is nothing you can start.
start-unit = Unit
start-submit = Submit

mine-title = Started by me
mine-empty = You have not started anything yet.

form-errors-title = { $count ->
    [one] 1 thing needs fixing:
   *[other] { $count } things need fixing:
}
form-submit = Submit
form-required = required
form-optional = optional
form-add-row = Add another
form-remove-row = Remove this one
form-select-placeholder = Choose…
form-yes = Yes
form-no = No
form-files-kept = Files uploaded:
form-file-remove = Remove
form-file-hint = JPEG, PNG or WebP pictures or PDF, up to { $mb } MB each.

err-required = This is required.
err-minLength = Enter at least { $limit } characters.
err-maxLength = Enter at most { $limit } characters.
err-minimum = Must be at least { $limit }.
err-maximum = Must be at most { $limit }.
err-exclusiveMinimum = Must be more than { $limit }.
err-exclusiveMaximum = Must be less than { $limit }.
err-pattern = The format is wrong.
err-type = The value has the wrong type.
err-format = The format is wrong.
err-format-date-time = Enter a date and time (China time), for example 2026-12-02 14:30.
err-oneOf = Choose one of the options.
err-enum = Choose one of the options.
err-const = Choose one of the options.
err-minItems = Add at least { $limit }.
err-maxItems = At most { $limit }.
err-other = This value is not accepted.
err-number = Enter a number.
err-upload-size = The file "{ $name }" is too large; the limit is { $mb } MB.
err-upload-type = The file "{ $name }" is not a JPEG, PNG or WebP picture or a PDF.
err-forbidden = You cannot do this step: it is outside your responsibilities, or a condition is not met.
err-duplicate = "{ $key }" already has an entry; it cannot be entered twice.
err-duplicate-mine = You have already entered; it cannot be entered twice.
err-full = All places are taken.
err-conflict = Someone has just acted on this step or it changed; reload the page and try again.
err-busy = This unit's rules are busy right now; nothing was changed. Please try again in a moment.
err-gone = This step is over; nothing more is needed.
err-no_transition = What you entered fits none of the next steps; check it and try again.
err-evaluation = The process is set up wrongly; this has been recorded, please tell an administrator.
err-rule_failed = A local rule failed; this has been recorded, please tell an administrator.
err-not_found = It no longer exists.
err-invalid = What you sent is not valid.
err-code-missing = Scan the code shown on site: this step needs it.
err-code-invalid = This code is not valid here (another activity, or altered).
err-code-expired = This code has expired; scan the code shown on site again.
err-not-a-unit-here = Pick from the list: nobody at that unit can handle it.
err-not-a-person-here = Pick from the list: that person is not on this unit's register.
err-refused = Not submitted: { $reason }

instance-title = Details
instance-status-running = In progress
instance-status-completed = Closed
instance-unit = Unit
instance-composition = Process version
instance-version = version { $version }
instance-overlay = { $unit } changes, version { $version }
instance-started = Started
instance-open-tasks = Now with
instance-data = What was filled in
timeline-title = Timeline

event-started = { $actor } started "{ $workflow }"
event-task_created = "{ $state }" began, for { $who }
event-task_created-due = "{ $state }" began, for { $who }, due by { $due }
span-years = { $n } { $n ->
    [one] year
   *[other] years
}
span-months = { $n } { $n ->
    [one] month
   *[other] months
}
span-days = { $n } { $n ->
    [one] day
   *[other] days
}
span-working-days = { $n } working { $n ->
    [one] day
   *[other] days
}
span-hours = { $n } { $n ->
    [one] hour
   *[other] hours
}
span-minutes = { $n } { $n ->
    [one] minute
   *[other] minutes
}
event-task_claimed = { $actor } claimed "{ $state }"
event-task_completed = { $actor } completed "{ $state }"
event-entry_submitted = { $actor } signed up in "{ $state }"
event-entry_waitlisted = { $actor } joined the waiting list in "{ $state }"
event-entry_withdrawn = { $actor } withdrew from "{ $state }"
event-entry_promoted = The first on the waiting list moved up in "{ $state }"
event-timer_fired = The time limit of "{ $state }" came
event-escalated = "{ $state }" is overdue; escalated to { $who }
event-rule_evaluated = Rule "{ $rule }" decided by { $by }: { $value }
event-rule_decided = By the rule "{ $rule }": { $value }
event-rule-by-default = the default rule
event-rule-no-value = nothing (the process goes on by default)
event-notified = Notified { $who }: { $text }
event-transitioned = Moved to "{ $state }"
event-signal_received = Callback "{ $signal }" received
event-rule_failed = The rule "{ $rule }" could not decide; the action was not taken
event-rule_failed-admin = The rule "{ $rule }" ({ $by }) failed; the action was not taken: { $error }
event-signal_ignored = Callback "{ $signal }" received, but the item could no longer take it; nothing was changed
event-signal_ignored-admin = Callback "{ $signal }" received and not applied: { $reason }
event-credited = Credited { $who } { $amount } { $account }
event-register_updated = { $who }'s register entry was updated ({ $count } { $count ->
    [one] item
   *[other] items
})
event-completed = Closed
event-entered = Entered "{ $state }"
event-join_waiting = "{ $state }" waits for the other branches
event-other = { $kind }
actor-system = System

page-not-found = This page does not exist, or you may not see it.
page-failed = Something went wrong on the server; try again later. If you ask for help, give this error number: { $id }
page-error = The server could not handle this just now; try again later.
page-back = Back to my tasks

# Between a label and its value: full-width in Chinese only.
list-separator = {", "}
notified-nobody = (nobody: no one holds that role)
notified-many = { $names } and { $count } in all
colon = {": "}
page-too-large = What you sent is too large: attach fewer files, or smaller photos, and send it again.
page-unreadable = What you sent could not be read; go back to the page, fill it in again and send it.
