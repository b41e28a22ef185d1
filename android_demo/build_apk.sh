#!/usr/bin/env bash
# Compiles every Kotlin and Java source of the app and builds a signed debug APK with tools the
# package registries serve (no Android SDK, Gradle or NDK: the APK carries no native library,
# so it installs but needs libdhm_jni.so from a real Gradle + NDK build to run), then checks it:
# apksigner verify, aapt dump badging (package, SDK levels, launchable activity) and dexdump
# (every class compiled from ai.dhm.demo is in classes.dex).
#
# Usage: android_demo/build_apk.sh [OUT_DIR]     (default android_demo/build/apk)
# Tools are cached in $DHM_APP_TOOLS (default ~/.cache/dhm/apps); the Debian ones are installed
# with apt-get when missing (root or sudo).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build/apk}
tools=${DHM_APP_TOOLS:-$HOME/.cache/dhm/apps}
KOTLIN_VERSION=1.9.24
# android.jar: API 23 is the newest a registry serves (Debian's libandroid-23-java, bullseye;
# bookworm and the npm registry have none). The app uses no API above 23 unguarded.
ANDROID_JAR_PACKAGE=libandroid-23-java
FRAMEWORK_RES=/usr/share/android-framework-res/framework-res.apk
src=$here/app/src/main
mkdir -p "$tools" "$out"

say() { echo "build_apk: $*"; }

debian_tools() {  # aapt, zipalign, apksigner, dexdump, proguard and a JDK from the machine's suite
  local missing=""
  for t in aapt zipalign apksigner dexdump proguard javac keytool; do command -v $t >/dev/null || missing=1; done
  [ -f "$FRAMEWORK_RES" ] || missing=1
  [ -z "$missing" ] && return
  local sudo; sudo=$( [ "$(id -u)" = 0 ] || echo sudo )
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    aapt zipalign apksigner dexdump proguard-cli default-jdk-headless android-framework-res >/dev/null
}

bullseye_jars() {  # dx and android.jar: arch-independent packages of Debian's previous suite, unpacked, not installed
  [ -f "$tools/debian/dx.jar" ] && [ -f "$tools/debian/android.jar" ] && return
  local apt="$tools/debian/apt" uri
  mkdir -p "$apt/lists/partial" "$apt/archives/partial"
  # the machine's own Debian mirror, bullseye suite
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
        awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" >"$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::archives=$apt/archives"
              -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Debug::NoLocking=1
              -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq
  (cd "$apt" && apt-get "${opts[@]}" download -qq dalvik-exchange "$ANDROID_JAR_PACKAGE")
  for deb in "$apt"/*.deb; do dpkg-deb -x "$deb" "$apt/root"; done
  cp "$apt"/root/usr/share/java/com.android.dx-*.jar "$tools/debian/dx.jar"
  cp "$apt"/root/usr/share/java/com.android.android-23.jar "$tools/debian/android.jar"
  rm -rf "$apt"
}

kotlin_compiler() {  # kotlinc from the npm registry (the JetBrains distribution, repackaged)
  [ -x "$tools/kotlin-$KOTLIN_VERSION/node_modules/kotlin-compiler/bin/kotlinc" ] && return
  npm install --silent --no-save --no-audit --no-fund --prefix "$tools/kotlin-$KOTLIN_VERSION" \
    "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
}

debian_tools
bullseye_jars
kotlin_compiler
kotlin_home=$tools/kotlin-$KOTLIN_VERSION/node_modules/kotlin-compiler
android_jar=$tools/debian/android.jar

# Gradle's manifest merger puts the namespace, versions and SDK levels in; aapt needs them written.
gradle=$here/app/build.gradle.kts
value() { sed -n "s/^ *$1 = \"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$gradle" | head -1; }
package=$(value namespace); min_sdk=$(value minSdk); target_sdk=$(value targetSdk)
version_code=$(value versionCode); version_name=$(value versionName)
build=$(mktemp -d "${TMPDIR:-/tmp}/dhm-apk.XXXXXX")
trap 'rm -rf "$build"' EXIT
sed "s|<manifest xmlns:android=\"http://schemas.android.com/apk/res/android\">|<manifest xmlns:android=\"http://schemas.android.com/apk/res/android\" package=\"$package\" android:versionCode=\"$version_code\" android:versionName=\"$version_name\">\n    <uses-sdk android:minSdkVersion=\"$min_sdk\" android:targetSdkVersion=\"$target_sdk\" />|" \
  "$src/AndroidManifest.xml" >"$build/AndroidManifest.xml"
mkdir -p "$build/gen" "$build/classes"

say "resources (aapt) and R.java"
aapt package -f -m -M "$build/AndroidManifest.xml" -S "$src/res" -I "$FRAMEWORK_RES" -J "$build/gen"

say "Kotlin $KOTLIN_VERSION and javac against android.jar (API 23)"
mapfile -t kotlin_sources < <(find "$src/java" -name '*.kt' | sort)
mapfile -t java_sources < <(find "$src/java" "$build/gen" -name '*.java' | sort)
# Lambdas and SAM conversions as classes, Java 8 bytecode: dx reads no invokedynamic below API 26.
"$kotlin_home/bin/kotlinc" -nowarn -jvm-target 1.8 -Xlambdas=class -Xsam-conversions=class \
  -classpath "$android_jar" -d "$build/classes" "${kotlin_sources[@]}" "${java_sources[@]}"
javac -nowarn --release 8 -Xlint:-options -classpath "$android_jar:$build/classes" -d "$build/classes" \
  "${java_sources[@]}" 2>&1 | grep -v "^Note:" || true
[ -n "$(find "$build/classes" -name 'DhmNative.class')" ] || { say "javac failed"; exit 1; }

say "shrink kotlin-stdlib to what the app uses (proguard), dex (dx)"
cat >"$build/proguard.pro" <<EOF
-injars $build/classes
-injars $kotlin_home/lib/kotlin-stdlib.jar(!META-INF/**)
-outjars $build/app.jar
-libraryjars $android_jar
-keep class $package.** { *; }
-dontobfuscate
-dontoptimize
-dontwarn
-dontnote
EOF
proguard @"$build/proguard.pro" >"$build/proguard.log" 2>&1 || { tail -20 "$build/proguard.log"; exit 1; }
java -jar "$tools/debian/dx.jar" --dex --min-sdk-version="$min_sdk" --output="$build/classes.dex" "$build/app.jar"

say "package, align, sign"
aapt package -f -M "$build/AndroidManifest.xml" -S "$src/res" -I "$FRAMEWORK_RES" \
  $( [ -d "$src/assets" ] && echo -A "$src/assets" ) -F "$build/unsigned.apk"
(cd "$build" && aapt add unsigned.apk classes.dex >/dev/null)
zipalign -f 4 "$build/unsigned.apk" "$build/aligned.apk"
keystore=$tools/debug.keystore  # the debug key Android Studio would make: not for release
[ -f "$keystore" ] || keytool -genkeypair -keystore "$keystore" -storepass android -keypass android \
  -alias androiddebugkey -keyalg RSA -keysize 2048 -validity 10000 -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
apk=$out/app-debug.apk
apksigner sign --ks "$keystore" --ks-pass pass:android --key-pass pass:android --out "$build/signed.apk" "$build/aligned.apk"
mv "$build/signed.apk" "$apk"

say "checks"
apksigner verify "$apk"
badging=$(aapt dump badging "$apk")
for want in "package: name='$package' versionCode='$version_code' versionName='$version_name'" \
            "sdkVersion:'$min_sdk'" "targetSdkVersion:'$target_sdk'" "launchable-activity: name='$package.MainActivity'"; do
  grep -qF "$want" <<<"$badging" || { say "aapt dump badging lacks: $want"; exit 1; }
done
dexed=$(dexdump "$build/classes.dex" | sed -n "s/^  Class descriptor  : 'L\(.*\);'$/\1/p" | sort)
compiled=$(cd "$build/classes" && find . -name '*.class' | sed 's|^\./||; s|\.class$||' | sort)
missing=$(comm -23 <(echo "$compiled") <(echo "$dexed"))
[ -z "$missing" ] || { say "classes.dex lacks: $missing"; exit 1; }
say "$apk: $(stat -c %s "$apk") bytes, signed, $(echo "$compiled" | wc -l) app classes in classes.dex, package $package, minSdk $min_sdk, targetSdk $target_sdk"
