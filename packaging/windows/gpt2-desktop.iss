; Inno Setup 6 script: dist\gpt2-desktop-<version>-setup.exe from the PyInstaller bundle dist\gpt2-desktop\.
; UNTESTED: written to the same spec as the Linux .deb, never built here. Run packaging\windows\build.ps1.
;
; Installs to Program Files (or per user), adds a Start-menu shortcut with the app's icon, and
; uninstalls everything it installed. It never touches %LOCALAPPDATA%\gpt2-desktop (history,
; settings), so user data survives upgrades and uninstalling.

#ifndef AppVersion
  #error Pass the version from pyproject.toml: iscc /DAppVersion=0.1.0 packaging\windows\gpt2-desktop.iss
#endif

[Setup]
; One AppId for every version, so that a newer installer upgrades in place.
AppId={{6F1C2E0B-7D4A-4C55-9B8E-2A6E5D1F3C90}
AppName=gpt2-desktop
AppVersion={#AppVersion}
AppPublisher=gpt2-desktop developers
DefaultDirName={autopf}\gpt2-desktop
DefaultGroupName=gpt2-desktop
DisableProgramGroupPage=yes
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=gpt2-desktop-{#AppVersion}-setup
SetupIconFile=..\..\assets\icons\gpt2-desktop.ico
UninstallDisplayIcon={app}\gpt2-desktop.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; Flags: unchecked

[Files]
Source: "..\..\dist\gpt2-desktop\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\gpt2-desktop"; Filename: "{app}\gpt2-desktop.exe"
Name: "{autodesktop}\gpt2-desktop"; Filename: "{app}\gpt2-desktop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\gpt2-desktop.exe"; Description: "{cm:LaunchProgram,gpt2-desktop}"; Flags: nowait postinstall skipifsilent
