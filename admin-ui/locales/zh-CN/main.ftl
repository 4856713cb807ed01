# civicflow pages, 简体中文 (the default).

app-name = 智慧党建与网格治理
nav-tasks = 我的待办
nav-start = 发起事项
nav-mine = 我发起的
nav-sign-out = 退出登录
nav-language = English
skip-to-content = 跳到正文
signed-in-as = 当前用户：{ $name }

sign-in-title = 登录
sign-in-login = 账号或手机号
sign-in-password = 密码
sign-in-submit = 登录
sign-in-or = 或
sign-in-code-title = 使用一次性验证码登录
sign-in-code-request = 获取验证码
sign-in-code = 验证码
sign-in-code-submit = 验证码登录
sign-in-code-sent = 验证码已发出，10 分钟内有效（演示模式下见服务器日志）。
sign-in-failed = 账号或密码不正确。
sign-in-code-failed = 验证码不正确或已过期。
sign-in-throttled = 尝试次数过多，请 { $minutes } 分钟后再试。
csrf-failed = 页面已过期，请返回后刷新再提交。

tasks-title = 我的待办
tasks-pool = 待认领
tasks-mine-empty = 暂无待办事项。
tasks-pool-empty = 暂无可认领的事项。
tasks-filter-workflow = 业务
tasks-filter-unit = 单位
tasks-filter-all = 全部
tasks-filter-apply = 筛选
task-due-in = 剩余 { $time }
task-overdue = 已超时 { $time }
task-no-due = 无时限
task-claim = 认领
task-open = 办理
task-view = 查看
task-assigned-role = 承办：{ $role }
task-claimed-by = 已由 { $name } 认领
task-claimed = 已认领，请办理。
task-context = 事项内容
task-done = 已提交。
duration-days = { $n } 天
duration-hours = { $n } 小时
duration-minutes = { $n } 分钟

start-title = 发起事项
start-empty = 您没有可发起的事项。
start-unit = 所属单位
start-submit = 提交

mine-title = 我发起的
mine-empty = 您还没有发起过事项。

form-errors-title = 提交的内容有 { $count } 处需要修改：
form-submit = 提交
form-required = 必填
form-optional = 选填
form-add-row = 添加一项
form-remove-row = 删除此项
form-select-placeholder = 请选择
form-yes = 是
form-no = 否
form-files-kept = 已上传的文件：
form-file-remove = 移除
form-file-hint = 可上传 JPEG、PNG、WebP 图片或 PDF，单个不超过 { $mb } MB。

err-required = 此项为必填项。
err-minLength = 至少填写 { $limit } 个字符。
err-maxLength = 最多填写 { $limit } 个字符。
err-minimum = 不能小于 { $limit }。
err-maximum = 不能大于 { $limit }。
err-exclusiveMinimum = 必须大于 { $limit }。
err-exclusiveMaximum = 必须小于 { $limit }。
err-pattern = 格式不正确。
err-type = 填写的类型不正确。
err-format = 格式不正确。
err-format-date-time = 请填写日期和时间（北京时间），例如 2026-12-02 14:30。
err-oneOf = 请从选项中选择。
err-enum = 请从选项中选择。
err-const = 请从选项中选择。
err-minItems = 至少选择或添加 { $limit } 项。
err-maxItems = 最多 { $limit } 项。
err-other = 内容不符合要求。
err-number = 请输入数字。
err-upload-size = 文件「{ $name }」过大，上限 { $mb } MB。
err-upload-type = 文件「{ $name }」的类型不支持，只能上传 JPEG、PNG、WebP 图片或 PDF。
err-refused = 未能提交：{ $reason }

instance-title = 事项详情
instance-status-running = 办理中
instance-status-completed = 已办结
instance-unit = 所属单位
instance-composition = 流程版本
instance-version = 第 { $version } 版
instance-overlay = { $unit }调整第 { $version } 版
instance-started = 发起时间
instance-open-tasks = 当前环节
instance-data = 填报内容
timeline-title = 办理过程

event-started = { $actor } 发起了「{ $workflow }」
event-task_created = 「{ $state }」环节开始，由 { $who } 办理
event-task_created-due = 「{ $state }」环节开始，由 { $who } 办理，限 { $due } 前完成
span-years = { $n } 年
span-months = { $n } 个月
span-days = { $n } 天
span-working-days = { $n } 个工作日
span-hours = { $n } 小时
span-minutes = { $n } 分钟
event-task_claimed = { $actor } 认领了「{ $state }」
event-task_completed = { $actor } 完成了「{ $state }」
event-entry_submitted = { $actor } 在「{ $state }」提交了登记
event-entry_waitlisted = { $actor } 在「{ $state }」进入候补
event-entry_withdrawn = { $actor } 撤回了「{ $state }」的登记
event-entry_promoted = 候补人员递补进入「{ $state }」
event-timer_fired = 「{ $state }」时限已到
event-escalated = 「{ $state }」超时，已上报 { $who }
event-rule_evaluated = 规则「{ $rule }」由 { $by } 判定：{ $value }
event-rule-by-default = 默认规则
event-notified = 通知 { $who }：{ $text }
event-transitioned = 流转至「{ $state }」
event-signal_received = 收到外部回调「{ $signal }」
event-credited = 为 { $who } 记入 { $account } { $amount }
event-register_updated = 已更新 { $who } 的登记信息（{ $count } 项）
event-completed = 事项已办结
event-other = { $kind }
actor-system = 系统

page-not-found = 未找到该页面，或您无权查看。
page-error = 服务器暂时无法处理，请稍后再试。
page-back = 返回我的待办

# Between a label and its value: full-width in Chinese only.
colon = ：
